"""Deploy and profile compiled modules on real or emulated boards over TVM RPC.

``artifact`` reads OUT/, ``server`` runs a TVM RPC server process, ``emulator`` makes one behave
like a board under qemu, ``rpc`` reaches a device and runs a module, ``profile`` ties them together
and writes OUT/profile.json.
"""
