cd /work/main
while kill -0 3208 2>/dev/null; do sleep 10; done
export OMP_NUM_THREADS=1
.venv/bin/pgan bench ablation --seeds 0 1 2 --out runs/ablation > logs/ablation_B.log 2>&1
