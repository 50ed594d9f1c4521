"""The paper's controlled benchmark, whole: every Table 1 variant (or Table 3 network) trained, scored and set
beside the paper (`python -m tools.study`, docs/study.md).

- `planning`: the studies, their weightings, the planned runs and their folders;
- `runs`: training the planned runs, one pipeline child process each, resumable;
- `collect`: what a finished run folder measured (metrics, training time);
- `costs`: each architecture's size and time (the generated nets, the benchmark, the paper preset's estimate);
- `findings`: the ranking against the paper's and the paper's findings checked on a measured table;
- `report`: STUDY.{json,md,csv,png} from the finished runs (`report_text`, `figures` write the prose and plot);
- `compare`: the test metrics of a few finished run folders side by side.
"""
