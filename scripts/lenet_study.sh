#!/usr/bin/env bash
# The check against Han et al. 2015 (Table 1) for lenet300 or lenet5: the same pipeline,
# magnitude pruning of weights (all layers, as Han et al.) reached in 4 prune/retrain
# rounds, run as a DVC experiment in a clone beside this project so that this workspace
# keeps its mlp results. The comparison with the papers is in the clone's reports/report.md.
#
# Recipe (chosen on the validation split, seed 0, never on test): baseline SGD lr 0.05,
# weight decay 1e-4, cosine schedule; each retraining round retrains at that lr, cosine
# over 5 epochs (learning-rate rewinding). Ratio 12.5 cuts 92% of the weights = 12.3x of
# all parameters (biases are kept), the first ladder point at or above Han et al.'s 12x.
#
#   scripts/lenet_study.sh lenet300|lenet5 [-S key=value ...]   (after `make pipeline`)
#
# Extra -S overrides are passed on to `dvc exp run` after the study's own.
set -euo pipefail
model=${1:?usage: scripts/lenet_study.sh lenet300|lenet5 [-S key=value ...]}
shift
here=$(cd "$(dirname "$0")/.." && pwd)
clone="$here/../$(basename "$here")-$model"
case $model in
  lenet300) extra=(-S train.epochs=20 -S 'sweep.seeds=[0,1,2]' -S 'sweep.ratios=[12.5,16]') ;;
  lenet5)   extra=(-S train.epochs=15 -S 'sweep.seeds=[0]' -S 'sweep.ratios=[12.5]') ;;
  *) echo "unknown model '$model': choose lenet300 or lenet5" >&2; exit 2 ;;
esac
[ -e "$clone" ] || git clone -q "$here" "$clone"
cd "$clone"
git pull -q --ff-only "$here" HEAD
export PATH="$here/.venv/bin:$PATH" PYTHONPATH="$clone/src"
dvc exp run -n "han-$model" -S model="$model" \
  -S 'prune.methods=[magnitude]' -S 'prune.granularities=[weight]' \
  -S prune.prune_output_layer=true -S finetune.rounds=4 -S finetune.epochs=5 \
  -S train.lr=0.05 -S train.weight_decay=0.0001 -S train.lr_schedule=cosine \
  -S finetune.lr=0.05 -S finetune.lr_schedule=cosine \
  -S search.trials=4 -S search.refine=0 "${extra[@]}" "$@"
echo "report: $clone/reports/report.md"
sed -n '/## Check against the papers/,$p' reports/report.md
