#!/usr/bin/env bash
# Snakemake runs this once, inside the freshly created environment: install bbmn from this
# checkout (editable, so the environment follows the code; dependencies come from the YAML).
# rules/common.smk sets BBMN_SOURCE to the checkout that holds workflow/Snakefile.
set -euo pipefail
: "${BBMN_SOURCE:?BBMN_SOURCE is not set: create the environments through snakemake}"
python -m pip install --no-deps --no-build-isolation --editable "$BBMN_SOURCE"
bbmn --version
