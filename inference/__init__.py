"""From a loaded model to a table: generation, test-time compute statistics, sweeps, the study's
instruments, the deficit analysis and the toy study, in rooms listed in inference/README.md."""
