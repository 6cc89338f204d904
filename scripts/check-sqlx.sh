#!/usr/bin/env bash
# Fails if the committed sqlx offline query data in .sqlx/ is not current, i.e. if
# scripts/sqlx-prepare.sh would change it (a missing .sqlx/ counts as empty).
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/sqlx-prepare.sh" --check "$@"
