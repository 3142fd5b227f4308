#!/usr/bin/env bash
# Benchmark: the per-message cost of the moderation check (RuleBook::check) with 1,000 blocked
# words and 500 muted users, against a room without rules, plus the word filter alone and the
# cost of loading a rule set. In-process, release build; prints ns per message.
#
#   bench/moderation.sh                        # 200,000 messages per measurement
#   MESSAGES=50000 bench/moderation.sh         # quicker
set -euo pipefail
cd "$(dirname "$0")/.."
MESSAGES=${MESSAGES:-200000}
echo "load: $(uptime | sed 's/.*load average: //')"
cargo run --release -q -p livehouse-bench --bin moderation_check -- --messages "$MESSAGES" "$@"
