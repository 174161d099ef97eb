#!/usr/bin/env bash
# The whole yt8m pipeline on data made on the spot (no download), in a few minutes on a CPU:
# frame-level videos -> train -> evaluate -> Kaggle CSV -> score the CSV.
#   bash quickstart.sh [OUTPUT_DIR]        (default: quickstart_out; re-runs reuse the data)
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-.venv/bin/python}
OUT=${1:-quickstart_out}

# 1. Frame-level YouTube-8M shards in the real format (built-in mode; 100 classes).
for split in train:1:1500 validate:2:500; do
  IFS=: read -r name seed count <<< "$split"
  if [ ! -e "$OUT/data/${name}_manifest.json" ]; then
    $PY -m yt8m.synthetic --output_dir="$OUT/data" --split="$name" --seed="$seed" \
      --num_videos="$count" --num_shards=4 --top_classes=100
  fi
done

# 2. Train the starter's frame-level logistic model (the starter README's command line, with
#    a batch size for 1,500 videos and the 100 classes the data uses).
$PY train.py --frame_features --model=FrameLevelLogisticModel \
  --feature_names='rgb,audio' --feature_sizes='1024,128' \
  --train_data_pattern="$OUT/data/train*.tfrecord" --train_dir="$OUT/model" --start_new_model \
  --batch_size=128 --num_classes=100 --num_epochs=20 --log_every_steps=20

# 3. Evaluate the last checkpoint.
$PY eval.py --train_dir="$OUT/model" --eval_data_pattern="$OUT/data/validate*.tfrecord" \
  --run_once --metrics_json="$OUT/eval.json"

# 4. Kaggle submission file for the validation videos, then score it.
$PY inference.py --train_dir="$OUT/model" --input_data_pattern="$OUT/data/validate*.tfrecord" \
  --output_file="$OUT/predictions.csv"
$PY eval.py --submission_file="$OUT/predictions.csv" --num_classes=100 \
  --eval_data_pattern="$OUT/data/validate*.tfrecord" --metrics_json="$OUT/csv_scores.json"
echo "Done: $OUT/eval.json, $OUT/predictions.csv, TensorBoard logs in $OUT/model"
