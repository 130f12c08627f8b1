# COAT ablations (coat/README.md): the same seed and steps from scratch, 1 thread each, one after the other, then
# the evaluation of each. Run from anywhere: bash bench/coat_ablations.sh (writes runs/ablations/).
set -x
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 PYTHONWARNINGS=ignore
STEPS=400
for spec in "full:" "no-ccl:--beta 0" "random-negatives:--negatives random" "single-scale:--ccl-scales single"; do
  name=${spec%%:*}; flags=${spec#*:}
  .venv/bin/python train/coat.py --config tiny --data synthetic:faces --exact-pairs --steps $STEPS --save-every 400 \
      --sample-every 1000 --log-every 50 --output runs/ablations/$name $flags > runs/ablations/$name.log 2>&1
  .venv/bin/python -m coat.evaluate --checkpoint runs/ablations/$name/pipeline --pairs 96 --json runs/ablations/$name.json \
      > runs/ablations/$name.eval.txt 2>&1
done
echo ALLDONE
