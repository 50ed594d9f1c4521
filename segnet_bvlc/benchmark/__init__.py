"""The speed and memory benchmarks behind `python -m tools.benchmark`, `benchmark_data`, `benchmark_layers`,
`benchmark_memory` and `cpu_speed`.

    run.py        the paper's Table 1 / Table 6 benchmark, architecture by architecture (tools.benchmark)
    measure.py    one architecture's figures; child.py its fresh processes (memory, inference time)
    timing.py     the generated nets as every benchmark times them (Input-fed, random inputs, per-layer timing)
    storage.py    Table 1's storage multiplier, from a net
    report.py     benchmark.{md,csv,json,png}, beside the paper's figures
    machine.py    the machine record (the provenance record plus BLAS, threads, GPU, load)
    torch_peer.py the PyTorch twin of a generated net, and its timing
    cpu_speed.py  Caffe builds and CPU settings side by side (tools.cpu_speed)
    data.py       the CamVid data path (tools.benchmark_data)
    per_layer.py  the Upsample layer against PyTorch (tools.benchmark_layers)
    memory.py     peak memory of training and validation per preset (tools.benchmark_memory)
    errors.py     BenchmarkError
"""
