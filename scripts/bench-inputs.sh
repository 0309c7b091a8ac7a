#!/usr/bin/env bash
# Builds the real-traffic inputs that README's `bench --replay` table
# quotes, under out/bench/ (or the folder given):
#   attack-web.log  the access-log lines of the CrowdSec test logs in
#                   ../shared/data, merged in time order (Nikto, SQLi, XSS,
#                   traversal, WordPress and admin probing, random-URI DoS)
# The other rows use files as they are: Loghub's OpenSSH_2k.log and the
# benign Apache baseline. Then, for example:
#   threatpilot bench --replay out/bench/attack-web.log --copies 4000
set -euo pipefail
cd "$(dirname "$0")/.."
data=${DATA:-../shared/data}
out=${1:-out/bench}
mkdir -p "$out"
# key each Common Log Format line by its instant (UTC offset applied),
# sort stably on the key, drop it; `awk 1` ends every file's last line
awk 1 "$data"/crowdsec-hub-tests/*/*.log |
  awk 'function days(y, m, d) {  # days since 1970-01-01 (civil calendar)
         y -= m <= 2; era = int(y / 400); yoe = y - era * 400
         doy = int((153 * (m + (m > 2 ? -3 : 9)) + 2) / 5) + d - 1
         return era * 146097 + yoe * 365 + int(yoe / 4) - int(yoe / 100) + doy - 719468
       }
       match($0, / \[[0-9][0-9]\/[A-Z][a-z][a-z]\/[0-9]+:[0-9][0-9]:[0-9][0-9]:[0-9][0-9] [-+][0-9]+\]/) {
         t = substr($0, RSTART + 2, RLENGTH - 3)
         m = (index("JanFebMarAprMayJunJulAugSepOctNovDec", substr(t, 4, 3)) + 2) / 3
         s = days(substr(t, 8, 4) + 0, m, substr(t, 1, 2) + 0) * 86400 \
             + substr(t, 13, 2) * 3600 + substr(t, 16, 2) * 60 + substr(t, 19, 2)
         z = substr(t, 22); off = (substr(z, 2, 2) * 60 + substr(z, 4, 2)) * 60
         s -= substr(z, 1, 1) == "-" ? -off : off
         printf "%012d\t%s\n", s, $0
       }' |
  sort -s -t $'\t' -k1,1 | cut -f2- > "$out/attack-web.log"
echo "$out/attack-web.log: $(wc -l < "$out/attack-web.log") lines"
