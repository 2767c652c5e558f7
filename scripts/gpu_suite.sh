#!/usr/bin/env bash
# The GPU session in one script: install, optionally build mamba_ssm's kernels as a peer, run the GPU test grid,
# then the benchmarks and the science runs. Each step logs to <step>.log; tables are printed as each step ends.
#
#   OUT=/tmp/out bash scripts/gpu_suite.sh peer scan ssd model memory      (from the repo root, on a CUDA machine)
#
# Steps: peer (build mamba_ssm from .peer/, ~3 min; or peer-bg ... peer-wait to build while other steps run), tests (pytest -m gpu, 8 processes), scan, conv-norm, ssd,
# ssd-sweep, ssd-stages, scan-prefetch (kernel benchmarks), model (training step), memory (long-context table),
# memory-targets (issue 9's target points), data (loader), classify (genossm classify throughput);
# science: apes (MAF -> per-species FASTA), scale-length, scale-size (pretraining series, STEPS optimizer steps per
# run), study (great apes, STUDY_STEPS per length, from scale-length's backbones), study-scratch (its control),
# scale-7m and study-7m (the 7M model at 2^20), study-seeds (the study again with SEEDS, default "1 2", at
# SEED_LENGTHS, default 2^20), score-context (held-out bits per base of those backbones against the window),
# variants (zero-shot scores of chimpanzee-lineage substitutions, results/variant-effects.md), generation (samples
# of genossm generate against real DNA, results/generation.md), repeats (repeat or unique reads: genossm finetune
# --examples records, results/classification.md), repeats-few (the same with 500 labelled reads per class).
# Extra Python wheels are read from .whl/. Everything lands in $OUT/results.tgz.
set -uo pipefail
OUT=${OUT:-$PWD/gpu-out}
R=$OUT/r  # everything goes here, then into one archive: $OUT/results.tgz (the device returns few files)
mkdir -p "$R"
trap 'cp -r results "$R/" 2>/dev/null; tar czf "$OUT/results.tgz" -C "$OUT" r; rm -rf "$R"' EXIT
trap 'exit 143' TERM INT  # a time limit still packs what is done
STEPS=${STEPS:-30}  # optimizer steps per pretraining run (scale-length, scale-size)
STUDY_STEPS=${STUDY_STEPS:-$STEPS}  # optimizer steps per length of the great-ape study
MAF=${MAF:-.gpu/great_apes_chr22.epo.maf.gz}
export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
python3 -m pip install -q --no-deps --no-build-isolation -e . >"$R/install.log" 2>&1 || { cat "$R/install.log"; exit 1; }
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.mem --format=csv | tee "$R/gpu.txt"

keep_summary() {  # keep_summary RUN DEST: what the results keep of a fine-tuning run (not its checkpoints)
  mkdir -p "$2" && cp "$1"/{summary.json,confusion.png,metrics.csv} "$2/"
}

step() {  # step NAME COMMAND...: run, log, report the exit status
  local name=$1; shift
  echo "=== $name: $*"
  local t0=$SECONDS
  "$@" 2>&1 | tee "$R/$name.log"
  echo "=== $name: exit ${PIPESTATUS[0]} after $((SECONDS - t0)) s"
}

for what in "$@"; do
  case $what in
    peer) step peer bash .peer/peer-kernels.sh build ;;
    peer-bg) bash .peer/peer-kernels.sh build >"$R/peer.log" 2>&1 & PEER_PID=$! ;;  # builds on the CPUs meanwhile
    peer-wait) echo "=== waiting for the mamba_ssm build"; wait "${PEER_PID:-}"; tail -n 3 "$R/peer.log" ;;
    tests) step tests timeout "${TESTS_TIMEOUT:-300}" python3 -m pytest -o addopts="" -q -m gpu -n 12 tests/kernels \
      tests/classification -p no:cacheprovider ${TESTS_K:+-k "$TESTS_K"} ;;
    scan) step bench-scan genossm bench selective-scan --profile ${SCAN_ARGS:-} --out "$R/scan" ;;
    scan-prefetch)  # the same shapes with every next tile loaded ahead of its use
      step bench-scan-prefetch genossm bench selective-scan --prefetch --profile --torch-max-seqlen 0 --repeats 10 \
        --out "$R/scan-prefetch" ;;
    scan-sweep)  # sensitivity of the forward to segments at long L and of both passes to the tile at short L
      for s in 16 64 256; do
        step "sweep-seg$s" genossm bench selective-scan --shapes 256x16x65536,256x4x262144,256x1x1048576 \
          --modes fwd --segments "$s" --repeats 10 --out "$R/sweep-seg$s"
      done
      for t in 2 8; do
        step "sweep-tile$t" genossm bench selective-scan --shapes 256x1024x1024,256x64x16384 --tile "$t" \
          --repeats 10 --torch-max-seqlen 0 --out "$R/sweep-tile$t"
      done ;;
    scan-tune)  # the scan's register cap and next-tile prefetch, short and long sequences, both passes
      for variant in "--no-prefetch" "--prefetch" "--no-prefetch --maxnreg 168" "--prefetch --maxnreg 168" \
        "--no-prefetch --maxnreg 128" "--prefetch --maxnreg 128"; do
        name=tune${variant// /}; name=${name//-/}
        step "$name" genossm bench selective-scan $variant --shapes 256x1024x1024,256x64x16384,256x1x1048576 \
          --torch-max-seqlen 0 --repeats 10 --out "$R/$name"
      done ;;
    scan-blockd)  # forward with 16 channels per program (twice the programs) where batch x channel blocks are few
      for variant in "" "--fwd-block-d 16" "--fwd-block-d 16 --tile 4"; do
        name=blockd${variant// /}; name=${name//-/}
        step "$name" genossm bench selective-scan $variant --shapes 256x1024x1024,256x256x4096,256x64x16384 \
          --modes fwd --torch-max-seqlen 0 --repeats 10 --out "$R/$name"
      done ;;
    conv-norm) step bench-conv-norm genossm bench conv-norm --out "$R/convnorm" ;;
    ssd) step bench-ssd genossm bench ssd --sweep-dstate "" --out "$R/ssd" ;;
    ssd-sweep) step bench-ssd-sweep genossm bench ssd --seqlen 1024,1048576 --dstate 16 --sweep-dstate 128,256 \
      --out "$R/ssdsweep" ;;
    ssd-stages) step bench-ssd-stages genossm bench ssd-stages --out "$R/ssdstages" ;;
    model)  # one training step at 2^20 tokens per call, ours and mamba_ssm's, both mixers
      step bench-model genossm bench model --train --dtype bfloat16 --model mamba1-0.7m,mamba2-0.8m \
        --tokens 1048576 --seqlen 1024,16384,262144,1048576 ${MODEL_ARGS:-} --out "$R/model" ;;
    memory)  # the long-context table: batch 1 at 2^20 and 2^21, every memory mode (mamba_ssm: plain)
      step bench-memory genossm bench model --train --dtype bfloat16 --batch 1 --repeats 2 \
        --model mamba1-0.7m,mamba2-0.8m,mamba1-7m,mamba2-7.5m --seqlen 1048576,2097152 \
        --memory plain,checkpoint,segmented --segment-len 262144 --out "$R/memory" ;;
    memory-targets)  # issue 9's targets: 7M at 2^20 within 16 GiB, 0.7M at 2^21 within 10 GiB, and 2^23
      step memory-7m genossm bench model --train --dtype bfloat16 --batch 1 --repeats 3 --model mamba1-7m \
        --seqlen 1048576 --memory segmented,plain --segment-len 393216 --out "$R/memory-7m"
      step memory-7.5m genossm bench model --train --dtype bfloat16 --batch 1 --repeats 2 --model mamba2-7.5m \
        --seqlen 1048576 --memory segmented --segment-len 65536 --out "$R/memory-7.5m"
      step memory-2m genossm bench model --train --dtype bfloat16 --batch 1 --repeats 2 --model mamba1-0.7m \
        --seqlen 2097152 --memory segmented,plain --segment-len 1048576 --out "$R/memory-2m"
      step memory-long genossm bench model --train --dtype bfloat16 --batch 1 --repeats 1 --model mamba1-0.7m \
        --seqlen 8388608 --memory segmented --segment-len 262144 --out "$R/memory-long" ;;
    data) step bench-data genossm bench data --out "$R/data" ;;
    classify) step bench-classify genossm bench classify --out "$R/classify" ;;  # bases/s of genossm classify
    apes) step apes genossm data maf2fasta "$MAF" /tmp/apes ;;  # per-species FASTA of the full alignment
    scale-length) step scale-length genossm scale --series scaling-length --data /tmp/apes/Hsap.fa \
      --max-steps "$STEPS" --output runs/scale-length --results-doc results/pretraining.md ;;
    scale-size) step scale-size genossm scale --series scaling-size --data /tmp/apes/Hsap.fa \
      --max-steps "$STEPS" --output /tmp/scale-size --results-doc results/pretraining.md ;;
    study)  # from the length series' backbones where scale-length ran (its runs/scale-length), else from scratch
      backbones=(); [ -d runs/scale-length ] && backbones=(--pretrained runs/scale-length)
      step study genossm study --config great-apes --maf "$MAF" --max-steps "$STUDY_STEPS" --work runs/study \
        "${backbones[@]}" ;;
    study-scratch)  # the control: the same fine-tuning from random weights, its own folder and results document
      step study-scratch genossm study --config great-apes --maf "$MAF" --max-steps "$STUDY_STEPS" \
        --lengths "${SCRATCH_LENGTHS:-2^16,2^18,2^20}" --work runs/study-scratch --results runs/study-scratch ;;
    scale-7m)  # the 7M model pretrained at 2^20 with the length series' recipe: the backbone of study-7m
      step scale-7m genossm scale --series scaling-length-7m --data /tmp/apes/Hsap.fa --max-steps "$STEPS" \
        --output runs/scale-length-7m ;;
    study-7m)  # the great-ape task at 2^20 with the 7M model (from scale-7m's backbone), its own folder and document
      step study-7m genossm study --config great-apes --maf "$MAF" --max-steps "$STUDY_STEPS" --lengths 2^20 \
        --pretrained runs/scale-length-7m --work runs/study-7m --results runs/study-7m ;;
    study-seeds)  # the study again with other seeds (SEEDS) at SEED_LENGTHS, from the same backbones: the spread
      for seed in ${SEEDS:-1 2}; do
        step "study-seed$seed" genossm study --config great-apes --maf "$MAF" --max-steps "$STUDY_STEPS" \
          --lengths "${SEED_LENGTHS:-2^20}" --seed "$seed" --pretrained runs/scale-length --work "runs/study-seed$seed" \
          --results "runs/study-seed$seed"
      done ;;
    score-context)  # held-out bits per base of every backbone of scale-length (and scale-7m) against the window
      models=()
      for dir in runs/scale-length/seqlen-* runs/scale-length-7m/seqlen-*; do
        [ -d "$dir/model" ] || continue
        size=1.4M; [[ $dir == *7m* ]] && size=7M
        k=0; while (( (1 << k) < ${dir##*-} )); do k=$((k + 1)); done  # log2 of the training length
        models+=(--model "$size trained at 2^$k=$dir/model")
      done
      step score-context python3 scripts/score_context.py --fasta /tmp/apes/Hsap.fa "${models[@]}" \
        --out results/runs/score-context ;;
    variants)  # zero-shot scores of chimpanzee-lineage substitutions against random alleles (results/variant-effects.md)
      step variants-build python3 scripts/ape_substitutions.py build --maf "$MAF" --apes /tmp/apes --out /tmp/subs
      for dir in runs/scale-length/seqlen-1048576 runs/scale-length-7m/seqlen-1048576; do
        [ -d "$dir/model" ] || continue
        name=1.4M; [[ $dir == *7m* ]] && name=7M
        for w in 1024 16384; do
          for kind in chimp random; do
            step "variants-$name-$w-$kind" genossm score-variants /tmp/apes/Hsap.fa "/tmp/subs/$kind.vcf" \
              --model "$dir/model" --window "$w" --no-progress --output "/tmp/subs/$name, window $w-$kind.tsv"
          done
        done
      done
      step variants python3 scripts/ape_substitutions.py summarize --apes /tmp/apes --scores /tmp/subs \
        --out results/runs/variants ;;
    generation)  # the 1.4M model pretrained at 2^10, 2^14 and 2^20, then samples of genossm generate against real DNA
      models=()
      for L in 1024 16384 1048576; do
        [ -d "runs/lm-$L/model" ] || step "pretrain-$L" genossm pretrain --model mamba1-1.4m --seqlen "$L" \
          --tokens-per-step 1048576 --max-steps 400 --lr 0.008 --val-every 100 --checkpoint-every 100 \
          --data /tmp/apes/Hsap.fa --output "runs/lm-$L"
        k=0; while (( (1 << k) < L )); do k=$((k + 1)); done
        models+=(--model "1.4M, L = 2^$k=runs/lm-$L/model")
      done
      step bench-generate genossm bench generate --samples 1,64,1024 --out "$R/bench-generate"
      step generation python3 scripts/generation_study.py --fasta /tmp/apes/Hsap.fa "${models[@]}" \
        --out results/runs/generation
      step generation-prompted python3 scripts/prompted_drift.py --fasta /tmp/apes/Hsap.fa "${models[@]}" \
        --out results/runs/generation-prompted ;;
    repeats)  # reads of human chr22, repeat or unique (soft-masking), one example per record: from scratch and from
      # the generation step's language models (runs/lm-<L>) where they exist; results/classification.md
      step repeats-build python3 scripts/repeat_reads.py build /tmp/apes/Hsap.fa /tmp/repeat-reads --per-class 20000
      runs=()
      for init in scratch 1024 1048576; do
        from=(); [ "$init" = scratch ] || from=(--init "runs/lm-$init/model")
        [ "$init" = scratch ] || [ -d "runs/lm-$init/model" ] || continue
        step "repeats-$init" genossm finetune --classes /tmp/repeat-reads/classes.tsv --examples records --seqlen 256 \
          --tokens-per-step 65536 --max-steps "${REPEAT_STEPS:-2000}" --lr 1e-3 --eval-windows 2000 \
          --kmer-windows 5000 --kmer-k 4 --val-every 500 --checkpoint-every 1000 "${from[@]}" \
          --output "runs/repeat-reads/$init"
        keep_summary "runs/repeat-reads/$init" "results/runs/repeat-reads/$init"
        runs+=("runs/repeat-reads/$init")
      done
      step repeats python3 scripts/repeat_reads.py summarize "${runs[@]}" --out results/runs/repeat-reads/table.md ;;
    repeats-few)  # the same held-out reads with 500 labelled reads per class: does pretraining help with few labels?
      step repeats-few-build python3 scripts/repeat_reads.py build /tmp/apes/Hsap.fa /tmp/repeat-few --per-class 20000 \
        --train-per-class 500
      runs=()
      for seed in ${FEW_SEEDS:-0}; do
        for arm in ${FEW_ARMS:-scratch 1024 1048576 scratch-head 1024-head 1048576-head}; do
          from=(); lr=1e-3; init=${arm%-head}; name=$arm; [ "$seed" = 0 ] || name=$arm-seed$seed
          [ "$init" = scratch ] || from=(--init "runs/lm-$init/model")
          [ "$arm" = "$init" ] || { from+=(--head-only); lr=1e-2; }  # a linear probe of the frozen backbone
          [ "$init" = scratch ] || [ -d "runs/lm-$init/model" ] || continue
          step "repeats-few-$name" genossm finetune --classes /tmp/repeat-few/classes.tsv --examples records \
            --seqlen 256 --tokens-per-step 16384 --max-steps "${FEW_STEPS:-300}" --warmup-steps 30 --lr "$lr" \
            --eval-windows 2000 --kmer-windows 500 --kmer-k 4 --val-every 100 --checkpoint-every 1000 --seed "$seed" \
            "${from[@]}" --output "runs/repeat-few/$name"
          keep_summary "runs/repeat-few/$name" "results/runs/repeat-few/$name"
          runs+=("runs/repeat-few/$name")
        done
      done
      step repeats-few python3 scripts/repeat_reads.py summarize "${runs[@]}" --out results/runs/repeat-few/table.md ;;
    *) echo "unknown step $what" >&2; exit 2 ;;
  esac
done
