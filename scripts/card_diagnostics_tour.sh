#!/usr/bin/env bash
# Technician diagnostics against the simulators and each named fault: a guided tour of
# `checkin-kiosk devices ...` output (used for the issue-3 closing note). Needs make setup.
cd "$(dirname "$0")/.."
K=".venv/bin/checkin-kiosk"
.venv/bin/checkin-kiosk sim id-card --listen 127.0.0.1:7311 --control 127.0.0.1:7312 > /tmp/ms_sim.out 2>/tmp/ms_sim.err &
SIM=$!
.venv/bin/checkin-kiosk sim pcscd --band 04A22B1A5C3F80 --bank-card 6212345678901232 > /tmp/ms_pcscd.out 2>/tmp/ms_pcscd.err &
PCSCD=$!
for i in $(seq 100); do [ -s /tmp/ms_sim.out ] && [ -s /tmp/ms_pcscd.out ] && break; sleep 0.1; done
cat /tmp/ms_sim.out /tmp/ms_pcscd.out
export PCSCLITE_CSOCK_NAME=$(python3 -c "import json;print(json.load(open('/tmp/ms_pcscd.out'))['PCSCLITE_CSOCK_NAME'])")
spec() { .venv/bin/python -c "from id_card_reader.simulator import SimulatorControl as C; import sys; C('127.0.0.1',7312).inject_spec(sys.argv[1])" "$1"; }
echo '$ checkin-kiosk devices list'; $K devices list; echo "exit $?"
echo '$ checkin-kiosk devices read-id --port socket://127.0.0.1:7311'; $K devices read-id --port socket://127.0.0.1:7311; echo "exit $?"
for f in no_card removed_mid_read bad_checksum bad_checksum@always slow_reader:0.3 sam_self_test_failure garbage_bytes short_frame no_answer reply_sw3:33 reply_sw3:40; do
  $K sim sim-ctl --control 127.0.0.1:7312 clear >/dev/null; .venv/bin/python -c "from id_card_reader.simulator import SimulatorControl as C; C('127.0.0.1',7312).place(0)"
  spec "$f"
  echo "\$ [fault $f] checkin-kiosk devices read-id --port socket://127.0.0.1:7311 --timeout 1 --json"; $K devices read-id --port socket://127.0.0.1:7311 --timeout 1 --json; echo "exit $?"
done
$K sim sim-ctl --control 127.0.0.1:7312 clear >/dev/null
R0="Kiosk Virtual PCD 00 00"; R1="Kiosk Virtual PCD 00 01"
echo "\$ checkin-kiosk devices read-band --reader '$R0'"; $K devices read-band --reader "$R0"; echo "exit $?"
echo "\$ checkin-kiosk devices read-band --reader '$R0' --json"; $K devices read-band --reader "$R0" --json; echo "exit $?"
echo "\$ checkin-kiosk devices read-bank-card --reader '$R1'"; $K devices read-bank-card --reader "$R1"; echo "exit $?"
echo "\$ checkin-kiosk devices read-bank-card --reader '$R1' --json"; $K devices read-bank-card --reader "$R1" --json; echo "exit $?"
kill $PCSCD; wait $PCSCD
echo '--- bank card kinds, each in its own vpcd slot process (sim cards), reader 00 01 ---'
.venv/bin/checkin-kiosk sim pcscd > /tmp/ms_pcscd2.out 2>/dev/null &
PCSCD=$!
for i in $(seq 100); do [ -s /tmp/ms_pcscd2.out ] && break; sleep 0.1; done
export PCSCLITE_CSOCK_NAME=$(python3 -c "import json;print(json.load(open('/tmp/ms_pcscd2.out'))['PCSCLITE_CSOCK_NAME'])")
P1=$(python3 -c "import json;print(json.load(open('/tmp/ms_pcscd2.out'))['readers'][1]['vpcd_port'])")
P0=$(python3 -c "import json;print(json.load(open('/tmp/ms_pcscd2.out'))['readers'][0]['vpcd_port'])")
echo "\$ [no card] checkin-kiosk devices read-bank-card --reader '$R1' --timeout 1"; $K devices read-bank-card --reader "$R1" --timeout 1; echo "exit $?"
echo "\$ [no band] checkin-kiosk devices read-band --reader '$R0' --timeout 1 --json"; $K devices read-band --reader "$R0" --timeout 1 --json; echo "exit $?"
for kind in "--bank-card 6212345678901232 --kind contactless" "--bank-card 4761739001010010 --kind other" "--bank-card 6228480402564890018 --kind chaining" "--dead"; do
  $K sim cards --vpcd-port $P1 $kind > /tmp/ms_card.out 2>/dev/null & CARD=$!
  for i in $(seq 100); do [ -s /tmp/ms_card.out ] && break; sleep 0.1; done
  echo "\$ [sim cards $kind] checkin-kiosk devices read-bank-card --reader '$R1' --json"; $K devices read-bank-card --reader "$R1" --json; echo "exit $?"
  kill $CARD; wait $CARD 2>/dev/null; rm -f /tmp/ms_card.out
  sleep 0.6  # let pcscd's poll notice the removal before the next card (demo script only)
done
$K sim cards --vpcd-port $P0 --band 0102030405060708090A > /tmp/ms_card.out 2>/dev/null & CARD=$!
for i in $(seq 100); do [ -s /tmp/ms_card.out ] && break; sleep 0.1; done
echo "\$ [sim cards --band 0102030405060708090A] checkin-kiosk devices read-band --reader '$R0' --json"; $K devices read-band --reader "$R0" --json; echo "exit $?"
kill $CARD; wait $CARD 2>/dev/null
kill $PCSCD $SIM; wait
echo '$ [pcscd not running] checkin-kiosk devices read-band'; PCSCLITE_CSOCK_NAME=/tmp/none.comm $K devices read-band; echo "exit $?"
echo '$ [nothing listening] checkin-kiosk devices read-id --port socket://127.0.0.1:7311'; $K devices read-id --port socket://127.0.0.1:7311; echo "exit $?"
