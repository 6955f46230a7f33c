/*
 * insn_count: a qemu TCG plugin that counts executed guest instructions (aarch64 guests).
 *
 * Usage:  qemu-aarch64 -plugin libinsn_count.so,outfile=PATH[,blocks=1] ...
 *         (or QEMU_PLUGIN=libinsn_count.so,outfile=PATH in qemu-user's environment)
 * At exit it writes lines to PATH, four counters each (total neon_cnt loads_stores fp_simd):
 *   region <4 counters>   one line per region: instructions between a start and a stop marker
 *   total  <4 counters>   instructions executed by the whole process
 * and, once a code range is marked, one line per region with one counter per guest thread:
 *   code <n_0> <n_1> ...  instructions each thread (vCPU 0, 1, ...) executed inside the range
 * and, with blocks=1, one line per translation block of the marked range that ran in a region:
 *   block <offset> <instructions> <executions>   offset from the range's start; a block qemu
 *   translated twice has two lines. Executions are counted in every region together, exactly with
 *   one guest thread (plain uint64_t, as the class counters); at most MAX_BLOCKS blocks are kept,
 *   so the lines' instructions fall short of the code lines' where a module has more.
 *
 * Markers: the guest calls close() on a descriptor numbered MARK_START or MARK_STOP (it fails with
 * EBADF, which is all the guest sees; from Python: os.close(n) in a try). Counting a region this way
 * leaves out the interpreter's start-up, whose count varies by millions from run to run; the region
 * itself repeats exactly. The first MAX_REGIONS regions are reported, in order; an empty region
 * measures the markers' own cost, to subtract. The code range (a module's executable mapping) is
 * marked by lseek() on descriptor MARK_CODE_START / MARK_CODE_END with the address as the offset,
 * before the code first runs: blocks translated inside it count per thread, exactly, with several
 * guest threads (a callback adds to the running thread's own counter).
 *
 * Counting: each translation block gets an inline "add n" of its instruction count, so the total
 * is exact for blocks run to their end (a syscall ends a block). Per class, each matching
 * instruction gets its own inline "add 1". Classes decode the fixed 32-bit A64 encodings:
 *   neon_cnt     CNT (vector)            0Q00 1110 xx10 0000 0101 10xx xxxx xxxx
 *   loads_stores the loads and stores group, op0 = x1x0 (bits 28..25)
 *   fp_simd      scalar FP and Advanced SIMD data processing, op0 = x111 (CNT excluded)
 * The four class counters are plain uint64_t, not atomic: exact with one guest thread only
 * (TVM_NUM_THREADS=1); the per-thread code counters are exact with any number.
 *
 * Build (plugin API version 1, QEMU 7.2):
 *   gcc -O2 -shared -fPIC -fvisibility=hidden -I scripts/qemu -o libinsn_count.so insn_count.c
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "qemu-plugin.h"

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

#define N_CLASSES 4
#define SYS_CLOSE_AARCH64 57
#define SYS_LSEEK_AARCH64 62
#define MARK_START 0x6d707400u /* "mpt\0": far above any descriptor the process holds */
#define MARK_STOP 0x6d707401u
#define MARK_CODE_START 0x6d707402u
#define MARK_CODE_END 0x6d707403u
#define MAX_REGIONS 4096
#define MAX_THREADS 64
#define MAX_BLOCKS 65536

enum { TOTAL, NEON_CNT, LOADS_STORES, FP_SIMD };

static uint64_t counters[N_CLASSES];
static uint64_t started[N_CLASSES];
static uint64_t regions[MAX_REGIONS][N_CLASSES];
static int n_regions;
static int in_region;
static char outfile[4096];
static int arm64;
static uint64_t code_start, code_end; /* the marked code range, [start, end) */
static uint64_t code[MAX_THREADS];    /* instructions run inside it, per guest thread */
static uint64_t code_started[MAX_THREADS];
static uint64_t code_regions[MAX_REGIONS][MAX_THREADS];

struct block {
    uint64_t offset;       /* from code_start */
    uint64_t instructions;
    uint64_t executions;   /* inside regions */
};
static int count_blocks; /* the blocks=1 argument */
static struct block blocks[MAX_BLOCKS];
static int n_blocks;

static int insn_class(uint32_t word)
{
    if ((word & 0xBF3FFC00u) == 0x0E205800u) {
        return NEON_CNT;
    }
    if ((word & 0x0A000000u) == 0x08000000u) {
        return LOADS_STORES;
    }
    if ((word & 0x0E000000u) == 0x0E000000u) {
        return FP_SIMD;
    }
    return TOTAL; /* no class of its own */
}

static void code_exec(unsigned int vcpu_index, void *insns)
{
    if (vcpu_index < MAX_THREADS) {
        code[vcpu_index] += (uint64_t)(uintptr_t)insns; /* only this thread writes its counter */
    }
}

static void block_exec(unsigned int vcpu_index, void *block)
{
    (void)vcpu_index;
    if (in_region) {
        ((struct block *)block)->executions++;
    }
}

static void tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    (void)id;
    size_t n = qemu_plugin_tb_n_insns(tb);
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &counters[TOTAL], n);
    uint64_t vaddr = qemu_plugin_tb_vaddr(tb);
    if (vaddr >= code_start && vaddr < code_end) {
        qemu_plugin_register_vcpu_tb_exec_cb(tb, code_exec, QEMU_PLUGIN_CB_NO_REGS, (void *)(uintptr_t)n);
        if (count_blocks && n_blocks < MAX_BLOCKS) {
            struct block *b = &blocks[n_blocks++];
            b->offset = vaddr - code_start;
            b->instructions = n;
            qemu_plugin_register_vcpu_tb_exec_cb(tb, block_exec, QEMU_PLUGIN_CB_NO_REGS, b);
        }
    }
    if (!arm64) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        uint32_t word;
        if (qemu_plugin_insn_size(insn) != 4) {
            continue;
        }
        memcpy(&word, qemu_plugin_insn_data(insn), 4);
        int cls = insn_class(word);
        if (cls != TOTAL) {
            qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64,
                                                       &counters[cls], 1);
        }
    }
}

static void on_syscall(qemu_plugin_id_t id, unsigned int vcpu_index, int64_t num, uint64_t a1,
                       uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6,
                       uint64_t a7, uint64_t a8)
{
    (void)id, (void)vcpu_index, (void)a3, (void)a4, (void)a5, (void)a6, (void)a7, (void)a8;
    if (!arm64 || (num != SYS_CLOSE_AARCH64 && num != SYS_LSEEK_AARCH64)) {
        return;
    }
    uint32_t fd = (uint32_t)a1; /* an int descriptor: the upper half of x0 is not its value */
    if (num == SYS_LSEEK_AARCH64) {
        if (fd == MARK_CODE_START) {
            code_start = a2;
        } else if (fd == MARK_CODE_END) {
            code_end = a2;
        }
    } else if (fd == MARK_START && !in_region) {
        memcpy(started, counters, sizeof(counters));
        memcpy(code_started, code, sizeof(code));
        in_region = 1;
    } else if (fd == MARK_STOP && in_region) {
        if (n_regions < MAX_REGIONS) {
            for (int i = 0; i < N_CLASSES; i++) {
                regions[n_regions][i] = counters[i] - started[i];
            }
            for (int t = 0; t < MAX_THREADS; t++) {
                code_regions[n_regions][t] = code[t] - code_started[t];
            }
            n_regions++;
        }
        in_region = 0;
    }
}

static void write_line(FILE *f, const char *name, const uint64_t *c)
{
    fprintf(f, "%s %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 "\n", name, c[0], c[1], c[2], c[3]);
}

static void at_exit(qemu_plugin_id_t id, void *userdata)
{
    (void)id;
    (void)userdata;
    FILE *f = fopen(outfile, "w");
    if (!f) {
        perror("insn_count: outfile");
        return;
    }
    for (int r = 0; r < n_regions; r++) {
        write_line(f, "region", regions[r]);
    }
    write_line(f, "total", counters);
    unsigned int n_threads = 0; /* 1 + the highest vCPU index that ran the code */
    for (unsigned int t = 0; t < MAX_THREADS; t++) {
        if (code[t]) {
            n_threads = t + 1;
        }
    }
    for (int r = 0; r < n_regions && code_end > code_start; r++) {
        fprintf(f, "code");
        for (unsigned int t = 0; t < n_threads; t++) {
            fprintf(f, " %" PRIu64, code_regions[r][t]);
        }
        fprintf(f, "\n");
    }
    for (int i = 0; i < n_blocks; i++) {
        if (blocks[i].executions) {
            fprintf(f, "block %" PRIu64 " %" PRIu64 " %" PRIu64 "\n", blocks[i].offset, blocks[i].instructions,
                    blocks[i].executions);
        }
    }
    fclose(f);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc,
                                           char **argv)
{
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "outfile=", 8) == 0 && strlen(argv[i] + 8) < sizeof(outfile)) {
            strcpy(outfile, argv[i] + 8);
        } else if (strcmp(argv[i], "blocks=1") == 0) {
            count_blocks = 1;
        } else {
            fprintf(stderr, "insn_count: unknown argument '%s' (expected outfile=PATH or blocks=1)\n", argv[i]);
            return -1;
        }
    }
    if (!outfile[0]) {
        fprintf(stderr, "insn_count: missing argument outfile=PATH\n");
        return -1;
    }
    arm64 = info->target_name && strcmp(info->target_name, "aarch64") == 0;
    qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
    qemu_plugin_register_vcpu_syscall_cb(id, on_syscall);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    return 0;
}
