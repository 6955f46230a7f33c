"""TVM targets: packed ``ai.mptc`` ONNX models -> compiled modules for x86, ARM and CUDA.

* ``compile`` - ``compile_model``: the whole flow, and the ``OUT/`` folder it writes;
* ``target`` - target dicts (host, boards, CUDA) and ``--target-json``;
* ``frontend`` - the one hook into TVM's ONNX importer (converters for the ``ai.mptc`` ops);
* ``chooser`` - which kernel a layer takes, and why; ``layout`` - weight re-layout at compile time;
* ``policy`` - the measured break-evens and block sizes the chooser and layout read, per family;
* ``kernels`` - compute-only TE definitions; ``schedules`` - one module per target family;
* ``build`` - the Relax pipeline (with the fp32 glue schedules) and ``tvm.compile``.
"""
