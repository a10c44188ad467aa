#!/usr/bin/env bash
# Real PAM stacks, run by pam-harness from a private directory (pam_start_confdir), with
# the exact return code of every call asserted. No card here: pcscd is not started, so
# the card step falls through as it does on a host without a reader.
source "$(dirname "$0")/lib/testlib.sh"

SECRET=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP
[ -z "$(foreign_pcscd)" ] || die "a pcscd is running: this suite needs none (stop it)"

enroll() { "$CLI" enroll "$1" --force --store "$STORE" --secret "${2:-$SECRET}" >/dev/null || die "enroll $1"; }
setpw() { echo "$2" | "$CLI" passwd "$1" --force --store "$STORE" --password-stdin >/dev/null || die "passwd $1"; }
totp() { oathtool --totp -b "${1:-$SECRET}" ${2:+--now=@$2}; }
# fresh USER: enrolls a new token with a random secret for USER and prints its current
# code: a code nobody used yet, whatever the clock did since the suite began.
fresh() {
    local s
    s=$(python3 -c 'import base64, os; print(base64.b32encode(os.urandom(20)).decode())')
    "$CLI" enroll "$1" --force --store "$STORE" --secret "$s" >/dev/null || die "enroll $1"
    totp "$s"
}

ARGS="store=$STORE timeout=2 deny=3 unlock_time=3"
service std "auth required $SO $ARGS"
service codeonly "auth required $SO $ARGS methods=code"
service ignorestack "auth [ignore=1 default=done] $SO $ARGS nullok" "auth required pam_deny.so" "auth required pam_permit.so"
service badarg "auth required $SO $ARGS timeout=abc"
service unknownarg "auth required $SO $ARGS frobnicate"
# pam_unix prompts "Password: " and leaves what was typed in PAM_AUTHTOK (applications
# cannot set it themselves), then our module takes it with use_first_pass.
service firstpass "auth optional pam_unix.so" "auth required $SO $ARGS use_first_pass"
# PAM_IGNORE → pam_deny (7); PAM_SUCCESS → skip to pam_permit (0); failures end the stack.
service acct "account [ignore=ignore success=1 default=die] $SO $ARGS" "account required pam_deny.so" "account required pam_permit.so"
service loose "auth required $SO store=$WORK/loose"
service tryfirst "auth optional pam_unix.so" "auth required $SO $ARGS try_first_pass"
service interval "auth required $SO store=$STORE timeout=2 deny=2 fail_interval=2 unlock_time=60"
service rootlock "auth required $SO store=$STORE timeout=2 deny=2 unlock_time=60"
service rootdeny "auth required $SO store=$STORE timeout=2 deny=2 unlock_time=60 even_deny_root root_unlock_time=2"
service typo "auth required $SO store=$WORK/no-such-store nullok"
service typoacct "account required $SO store=$WORK/no-such-store nullok"

enroll alice; setpw alice 1234
setpw bob 5678
enroll dave
now=$(date +%s)

code=$(totp)   # once: the replay below must send the same code, even across a step boundary
run std alice --answer "$code"
check "a code from oathtool logs in (PAM_SUCCESS)" 0 "$RC"
case "$OUT" in *"prompt: One-time code (Enter for your simple password): "*) ok "the code prompt is the module's";;
    *) not_ok "the code prompt is the module's" "$OUT";; esac
run std alice --answer "$code"
check "the same code again is a replay (PAM_AUTH_ERR)" 7 "$RC"
case "$OUT" in *"already used"*) ok "the replay is explained to the user";; *) not_ok "the replay is explained" "$OUT";; esac
run std alice --answer "$code" --silent
check "PAM_SILENT: the replay is still refused" 7 "$RC"
check "PAM_SILENT: no message, only the prompt" "prompt: One-time code (Enter for your simple password): " "$(echo "$OUT" | grep -E '^(info|error|prompt):')"
"$CLI" unlock alice --store "$STORE" >/dev/null
run std alice --answer "" --answer 1234
check "Enter at the code prompt, then the simple password (PAM_SUCCESS)" 0 "$RC"
run std alice --answer "" --answer 9999
check "a wrong simple password (PAM_AUTH_ERR)" 7 "$RC"
run std bob --answer 5678
check "a password-only user gets the password prompt at once" 0 "$RC"
run std alice --answer 000000
check "a wrong code (PAM_AUTH_ERR)" 7 "$RC"
"$CLI" unlock alice --store "$STORE" >/dev/null

for i in 1 2 3; do run std dave --answer 000000; done
check "third wrong code still PAM_AUTH_ERR" 7 "$RC"
run std dave --answer "$(totp)"
check "locked after deny=3 failures: even a right code gets PAM_MAXTRIES" 11 "$RC"
case "$OUT" in *"error: Too many failed attempts: locked for"*) ok "the lock is explained, with the time left";; *) not_ok "the lock is explained" "$OUT";; esac
run acct dave --acct-only
check "acct_mgmt refuses the locked user (PAM_PERM_DENIED)" 6 "$RC"
sleep 3.2
run std dave --answer 000000
check "after the lock expired, one wrong code is a failure, not a new lock (PAM_AUTH_ERR)" 7 "$RC"
case "$OUT" in *"now locked"*) not_ok "no new lock after one mistake" "$OUT";; *) ok "no new lock after one mistake";; esac
run std dave --answer "$(totp)"
check "released after unlock_time: the right code works" 0 "$RC"
run acct dave --acct-only
check "acct_mgmt passes the released user" 0 "$RC"
run acct carol --acct-only
check "acct_mgmt ignores a user without a record (PAM_IGNORE: the stack goes on to pam_deny)" 7 "$RC"

run std carol
check "a user without a record (PAM_USER_UNKNOWN)" 10 "$RC"
run ignorestack carol
check "nullok: a user without a record is ignored (stack goes on to pam_permit)" 0 "$RC"
run ignorestack alice --answer 000000
check "nullok does not ignore a wrong code of an enrolled user" 7 "$RC"

run badarg alice --answer "$(totp "" $((now + 30)))"
check "a malformed argument fails safe (PAM_SERVICE_ERR)" 3 "$RC"
"$CLI" unlock alice --store "$STORE" >/dev/null
run unknownarg alice --answer "" --answer 1234
check "an unknown argument is ignored (and logged)" 0 "$RC"

mkdir -p "$WORK/loose/users" && chmod 755 "$WORK/loose"
run loose alice --answer 1234
check "a store open to others is refused (PAM_AUTHINFO_UNAVAIL)" 9 "$RC"

# pam_faillock's meaning: failures add up only within fail_interval; root is locked only
# with even_deny_root, and then for root_unlock_time.
enroll frank
run interval frank --answer 000000
sleep 2.2
run interval frank --answer 000000
check "two failures further apart than fail_interval: the second is PAM_AUTH_ERR" 7 "$RC"
run interval frank --answer "$(totp)"
check "… and they do not add up to a lock: the right code works" 0 "$RC"
run interval frank --answer 000000; run interval frank --answer 000000
run interval frank --answer "$(fresh frank)"
check "two failures within fail_interval lock (PAM_MAXTRIES)" 11 "$RC"
enroll root
run rootlock root --answer 000000; run rootlock root --answer 000000
run rootlock root --answer "$(totp)"
check "root is not locked without even_deny_root" 0 "$RC"
run rootdeny root --answer 000000; run rootdeny root --answer 000000
code=$(fresh root)
run rootdeny root --answer "$code"
check "even_deny_root locks root (PAM_MAXTRIES)" 11 "$RC"
sleep 2.2
run rootdeny root --answer "$code"
check "root_unlock_time releases root" 0 "$RC"

# nullok means "no record in a store that exists": a missing store fails closed.
run typo alice --answer 1234
check "nullok with a missing store (a typo in store=) fails closed: PAM_AUTHINFO_UNAVAIL" 9 "$RC"
[ -e "$WORK/no-such-store" ] && not_ok "the login did not create the missing store" || ok "the login did not create the missing store"
run typoacct alice --acct-only
check "acct_mgmt with a missing store: PAM_AUTHINFO_UNAVAIL" 9 "$RC"

cp "$STORE/users/alice" "$WORK/alice.bak"
printf 'smartotp-record 1\nuser alice\ntoken broken\n' >"$STORE/users/alice"
run std alice --answer 1234
check "a malformed record (PAM_AUTHINFO_UNAVAIL)" 9 "$RC"
if cmp -s "$STORE/users/alice" <(printf 'smartotp-record 1\nuser alice\ntoken broken\n'); then ok "the malformed record is left as it was"; else not_ok "the malformed record is left as it was"; fi
cp "$WORK/alice.bak" "$STORE/users/alice"

enroll erin; setpw erin 4321
run firstpass erin --answer "$(totp)"
check "use_first_pass takes PAM_AUTHTOK (typed at pam_unix's prompt) as the code" 0 "$RC"
prompts=$(echo "$OUT" | grep -c '^prompt:')
check "use_first_pass: only pam_unix prompted" 1 "$prompts"
run firstpass erin --answer 4321
check "use_first_pass: the simple password typed at pam_unix's prompt is not taken as ours (PAM_AUTH_ERR)" 7 "$RC"
# try_first_pass: the first prompt's answer was tried as the simple password, uncounted: an
# oracle, and one password passing for both factors. Now it is tried as a code only.
run tryfirst erin --answer 4321
check "try_first_pass: the simple password at the first prompt logs nobody in (PAM_CONV_ERR: asked again)" 19 "$RC"
case "$OUT" in *"prompt: One-time code (Enter for your simple password): "*) ok "… the module asks for its own factor";;
    *) not_ok "… the module asks for its own factor" "$OUT";; esac
run tryfirst erin --answer 4321 --answer "" --answer 4321
check "try_first_pass: the simple password typed at its own prompt works" 0 "$RC"
run tryfirst erin --answer "$(fresh erin)"
check "try_first_pass: a code typed at the first prompt is taken as the code" 0 "$RC"
run firstpass erin --answer nonsense
check "use_first_pass with a wrong PAM_AUTHTOK never prompts again (PAM_AUTH_ERR)" 7 "$RC"

# Hostile answers: the host process (the harness) must survive and get a clear code.
"$CLI" unlock alice --store "$STORE" >/dev/null
run codeonly alice --answer-big 1048576
check "a 1 MiB answer is refused (PAM_AUTH_ERR), the host survives" 7 "$RC"
run codeonly alice --answer-hex 31323300343536
check "an answer with a NUL byte is refused" 7 "$RC"
run codeonly alice --answer-hex fffe8081c0af
check "a non-UTF-8 answer is refused" 7 "$RC"
"$CLI" unlock alice --store "$STORE" >/dev/null
run codeonly alice --answer ""
check "an empty answer when only codes are allowed is refused" 7 "$RC"
"$CLI" unlock alice --store "$STORE" >/dev/null
run std alice --conv-fail
check "a conversation function that fails (PAM_CONV_ERR)" 19 "$RC"
run std alice --conv-null
check "a conversation that returns NULL (PAM_CONV_ERR)" 19 "$RC"
run std alice --no-conv
check "no conversation function at all (PAM_CONV_ERR)" 19 "$RC"
failures=$("$CLI" show alice --store "$STORE" --json | sed -n 's/.*"failures" : \([0-9]*\).*/\1/p')
check "conversation failures are not counted against the user" 0 "$failures"

run std "../etc/passwd"
check "user name ../etc/passwd (PAM_USER_UNKNOWN, no path built)" 10 "$RC"
run std "$(head -c 10240 /dev/zero | tr '\0' x)"
check "a 10 KB user name (PAM_USER_UNKNOWN)" 10 "$RC"
run std "-rf"
check "a user name like an option (PAM_USER_UNKNOWN)" 10 "$RC"

# 32 logins at once through real PAM stacks, 32 users.
for i in $(seq 1 32); do enroll "para$i"; done
code=$(totp)
pids=()
for i in $(seq 1 32); do
    nss_user "para$i"; with_nss "$H" --confdir "$CONF" --service codeonly --user "para$i" --answer "$code" >/dev/null 2>&1 &
    pids+=($!)
done
wins=0
for p in "${pids[@]}"; do if wait "$p"; then wins=$((wins + 1)); fi; done
check "32 PAM logins at once (32 users): all succeed" 32 "$wins"
enroll same
nss_user same
code=$(totp)
pids=()
for i in $(seq 1 8); do
    with_nss "$H" --confdir "$CONF" --service codeonly --user same --answer "$code" >/dev/null 2>&1 &
    pids+=($!)
done
wins=0
for p in "${pids[@]}"; do if wait "$p"; then wins=$((wins + 1)); fi; done
check "8 PAM logins at once with one user's same code: exactly one succeeds" 1 "$wins"

# One policy for every caller: services that set no lock option judge one failure count
# by the policy file (conf=, pam_faillock's name; /etc/smartotp/smartotp.conf by default),
# and an argument wins over the file for its own service only.
printf '# shared\nstore=%s\ndeny=3 unlock_time=600\ntimeout=2\n' "$STORE" >"$WORK/shared.conf"
service sudo-like "auth required $SO conf=$WORK/shared.conf methods=code"
service sshd-like "auth required $SO conf=$WORK/shared.conf methods=code"
service own-deny "auth required $SO conf=$WORK/shared.conf methods=code deny=10"
code=$(fresh paula)
run sudo-like paula --answer 000000; check "shared policy: a wrong code through sudo (PAM_AUTH_ERR)" 7 "$RC"
run sudo-like paula --answer 000000; check "shared policy: a second through sudo" 7 "$RC"
run sshd-like paula --answer 000000; check "shared policy: a third through sshd" 7 "$RC"
run sshd-like paula --answer "$code"; check "shared policy: the file's deny=3 locks sshd (PAM_MAXTRIES)" 11 "$RC"
run sudo-like paula --answer "$code"; check "shared policy: … and sudo alike" 11 "$RC"
run own-deny paula --answer "$code"; check "shared policy: deny=10 as an argument wins for its service only" 0 "$RC"
chmod 664 "$WORK/shared.conf"
run sudo-like paula --answer 000000; check "a policy file others can write is refused (PAM_SERVICE_ERR)" 3 "$RC"
chmod 644 "$WORK/shared.conf"

# --- The user as the name service spells it -------------------------------------------------
# groups=: only members of a listed group are asked (primary or supplementary, through the
# name service: nss_wrapper's group file here), a member of a ! group never; everyone else
# is ignored (PAM_IGNORE: the stack's next line decides). A wrong code tells "asked" (7)
# from "ignored" (0, through pam_permit).
echo "otpstaff:x:45001:grace,heidi" >>"$WORK/nss/group"
echo "otprobots:x:45002:heidi" >>"$WORK/nss/group"
echo "ivan:x:45010:45001::/nonexistent:/usr/sbin/nologin" >>"$WORK/nss/passwd"
for u in grace heidi ivan judy; do enroll "$u"; done
gstack() { service "$1" "auth [ignore=1 default=done] $SO $ARGS $2" "auth required pam_deny.so" "auth required pam_permit.so"; }
gstack groups "groups=otpstaff,!otprobots"
run groups grace --answer 000000; check "groups=otpstaff,!otprobots: a member of otpstaff is asked (a wrong code: PAM_AUTH_ERR)" 7 "$RC"
run groups grace --answer "$(totp)"; check "… and logs in with her code" 0 "$RC"
run groups ivan --answer 000000; check "… otpstaff as the primary group: asked" 7 "$RC"
run groups heidi --answer 000000; check "… a member of otpstaff and of !otprobots: not asked (PAM_IGNORE, then pam_permit)" 0 "$RC"
check "… and sees no prompt" 0 "$(echo "$OUT" | grep -c 'code')"
run groups judy --answer 000000; check "… a user in neither group: not asked" 0 "$RC"
gstack onlybang "groups=!otprobots"
run onlybang judy --answer 000000; check "groups=!otprobots: everyone else is asked" 7 "$RC"
gstack ghostgroup "groups=no-such-group"
run ghostgroup judy --answer 000000; check "groups= naming a group the name service does not know: the user is asked, not let past" 7 "$RC"
printf 'groups=otpstaff\n' >"$WORK/groups.conf"
gstack fromconf "conf=$WORK/groups.conf"
run fromconf judy --answer 000000; check "groups= in smartotp.conf: a non-member is not asked" 0 "$RC"
run fromconf grace --answer 000000; check "… a member is" 7 "$RC"
gstack badgroups "groups=staff,,x"
run badgroups grace --answer 000000; check "a malformed groups= fails closed (PAM_SERVICE_ERR)" 3 "$RC"

# The example sshd stack's auth lines (pam.d/examples/sshd): nullok while users enrol.
service exsshd "$(grep '^auth' "$ROOT/pam.d/examples/sshd" | sed "s#pam_smartotp.so#$SO $ARGS#")"
run exsshd nora --answer 000000; check "pam.d/examples/sshd: a user without a record passes while users enrol (nullok)" 0 "$RC"
run exsshd grace --answer 000000; check "… an enrolled user's wrong code is refused" 7 "$RC"
run exsshd grace --answer "$(totp "" $(( $(date +%s) + 30 )))"; check "… and her code logs her in" 0 "$RC"

# Records are keyed by pw_name. A name that resolves to another spelling (a case-insensitive
# SSSD: ALICE → alice) would find no record and pass nullok with no second factor.
gcc -shared -fPIC -o "$WORK/libnss_casefold.so.2" "$ROOT/Tests/Harness/nss-casefold.c" || die "cannot build the test name service"
service nullcode "auth required $SO $ARGS methods=code nullok"
# (not `run`: it would add CARLA to this run's passwd file as a name of its own)
casefold() { local s=$1 u=$2; shift 2; OUT=$(NSS_WRAPPER_MODULE_SO_PATH="$WORK/libnss_casefold.so.2" NSS_WRAPPER_MODULE_FN_PREFIX=casefold \
    with_nss "$H" --confdir "$CONF" --service "$s" --user "$u" "$@" 2>&1); RC=$?; }
code=$(fresh carla); nss_user carla
casefold nullcode CARLA --answer "$code"
check "a user the name service spells otherwise (CARLA → carla) is refused under nullok (PAM_USER_UNKNOWN)" 10 "$RC"
casefold nullcode carla --answer "$code"; check "… and carla herself logs in with the same code (it was not used)" 0 "$RC"
casefold nullcode ghost --answer 123456
check "a user the name service does not know is refused under nullok (PAM_USER_UNKNOWN)" 10 "$RC"
casefold acct CARLA --acct-only; check "… in account too" 10 "$RC"
finish
