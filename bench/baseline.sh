# Sourced by bench/pam and bench/sudo (the caller defines `die`).
#
# wait_for_baseline GRANT: waits (up to 10 min) for the grant's certification baseline, which
# jitd's certifier thread takes once when the grant goes live (a walk of certify_suid_roots,
# `/` by default). The timed transactions start after it: on this build machine `/` holds
# millions of files, and the walk would compete with them for the 2 CPUs (bench/run's
# PAM figures of 2026-12-03 19:19 UTC, taken during the walk, showed +13.8 ms mean).
# Sets BASELINE_MS to how long the walk took, reported with the figures.
BASELINE_MS=
wait_for_baseline() {
    local f=/var/lib/jitd/certify/$1.baseline t0=${EPOCHREALTIME/./} i
    for ((i = 0; i < 6000; i++)); do
        if [ -e "$f" ]; then
            BASELINE_MS=$(( (${EPOCHREALTIME/./} - t0) / 1000 ))
            return 0
        fi
        sleep 0.1
    done
    die "no certification baseline for grant $1 after 10 minutes"
}
