cd /work/main
while kill -0 3189 2>/dev/null; do sleep 10; done
export OMP_NUM_THREADS=1
.venv/bin/python benchmarks/part_sources.py --sources detector --seeds 0 1 2 > logs/ps_detector.log 2>&1
.venv/bin/pgan bench ablation --seeds 0 1 2 --out runs/ablation > logs/ablation_A.log 2>&1
