#!/bin/sh
# One-shot job (docker-compose.yml service "temporal-init", image temporalio/admin-tools):
# wait until the Temporal server serves, create the namespace if it is missing, and register
# the lecture workflow's custom search attributes in it. The worker starts only after this
# job exits 0.
#
# Idempotent and race-safe: it runs again on every `up`, and the worker may register the same
# attributes at the same moment (worker.ensure_search_attributes). Each step checks the
# result rather than the exit code of its own request: an attribute that ends up listed
# with the wanted type is success, whoever created it; one listed with another type is an
# error that needs a person (a type cannot be changed in place).
#
# Environment: TEMPORAL_ADDRESS (host:port), TEMPORAL_NAMESPACE, NAMESPACE_RETENTION (e.g.
# 7d, used only when the namespace is created), SEARCH_ATTRIBUTES ("Name=Type ...", types as
# `temporal operator search-attribute create --type` takes them: Keyword, Int, ...).
set -eu

: "${TEMPORAL_ADDRESS:?TEMPORAL_ADDRESS is required}"
: "${SEARCH_ATTRIBUTES:?SEARCH_ATTRIBUTES is required}"
NAMESPACE=${TEMPORAL_NAMESPACE:-default}
RETENTION=${NAMESPACE_RETENTION:-7d}
ATTEMPTS=60
PAUSE=2

say() { echo "temporal-init: $*"; }
fail() {
    echo "temporal-init: $*" >&2
    exit 1
}
cli() { temporal "$@" --address "$TEMPORAL_ADDRESS"; }

# The type an attribute has in the namespace ("Keyword", "Int", ...), empty when it has none.
attribute_type() {
    cli operator search-attribute list --namespace "$NAMESPACE" 2>/dev/null |
        awk -v name="$1" '$1 == name { print $2 }'
}

attempt=1
until cli operator cluster health >/dev/null 2>&1; do
    [ "$attempt" -lt "$ATTEMPTS" ] || fail "Temporal at $TEMPORAL_ADDRESS is not serving"
    attempt=$((attempt + 1))
    sleep "$PAUSE"
done
say "Temporal at $TEMPORAL_ADDRESS is serving"

attempt=1
until cli operator namespace describe --namespace "$NAMESPACE" >/dev/null 2>&1; do
    [ "$attempt" -lt "$ATTEMPTS" ] || fail "namespace $NAMESPACE could not be created"
    if cli operator namespace create --namespace "$NAMESPACE" --retention "$RETENTION" \
        >/dev/null 2>&1; then
        say "created namespace $NAMESPACE (retention $RETENTION)"
    fi
    attempt=$((attempt + 1))
    sleep "$PAUSE"
done
say "namespace $NAMESPACE exists"

for spec in $SEARCH_ATTRIBUTES; do
    name=${spec%%=*}
    type=${spec#*=}
    attempt=1
    while :; do
        have=$(attribute_type "$name")
        if [ "$have" = "$type" ]; then
            break
        elif [ -n "$have" ]; then
            fail "search attribute $name exists with type $have, not $type: rename one of them"
        fi
        [ "$attempt" -lt "$ATTEMPTS" ] || fail "search attribute $name could not be registered"
        # A namespace created a moment ago may not be usable yet: retried until listed.
        cli operator search-attribute create --namespace "$NAMESPACE" \
            --name "$name" --type "$type" >/dev/null 2>&1 || true
        attempt=$((attempt + 1))
        sleep 1
    done
    say "search attribute $name ($type) is registered"
done
