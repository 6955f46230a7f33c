"""Deploy and profile compiled modules on real or emulated boards over TVM RPC.

``artifact`` reads and checks OUT/ (its module's sha256 included), ``server`` runs a TVM RPC
server process, ``emulator`` makes one behave like a board under qemu, ``probe`` checks that a
TVM server or tracker answers, ``tracker`` asks a tracker for a board, ``rpc`` reaches a device
and runs a module with a deadline on every step, ``trial`` loads a module in a child process
before this one does, ``settings`` holds the bounds and defaults of the options, ``compare``
makes the peers a module is timed against, and ``profile`` ties them together and writes
OUT/profile.json.
"""
