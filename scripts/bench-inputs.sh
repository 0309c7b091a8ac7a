#!/usr/bin/env bash
# Builds the real-traffic inputs that README's `bench --replay` table
# quotes, under out/bench/ (or the folder given):
#   attack-web.log  the access-log lines of the CrowdSec test logs in
#                   ../shared/data, merged in time order (Nikto, SQLi, XSS,
#                   traversal, WordPress and admin probing, random-URI DoS)
#   flood.log       a flood of new addresses for the memory figure:
#                   100,000 a minute for ten minutes, 1,000,000 one-request
#                   scanners in an nginx access log, each asking for one of
#                   ten paths, one in ten a known exploit path
# The other rows use files as they are: Loghub's OpenSSH_2k.log and the
# benign Apache baseline. Then, for example:
#   threatpilot bench --replay out/bench/attack-web.log --copies 4000
#   threatpilot bench --replay out/bench/flood.log --copies 1
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

# the flood: address i is 10.(i>>16).(i>>8 & 255).(i & 255), request i at
# 600 ms * i / 1000 past 12:00:00, so 100,000 new addresses a minute
awk 'BEGIN {
  split("/ /index.html /login /robots.txt /favicon.ico /wp-login.php /.env /admin/ /api/v1/status /cgi-bin/.%2e/.%2e/.%2e/.%2e/bin/sh", path, " ")
  for (i = 0; i < 1000000; i++) {
    s = int(i * 6 / 10000); p = path[i % 10 + 1]
    printf "10.%d.%d.%d - - [01/Dec/2026:%02d:%02d:%02d +0000] \"GET %s HTTP/1.1\" %d 153 \"-\" \"Mozilla/5.0 (scanner %d)\"\n",
      int(i / 65536), int(i / 256) % 256, i % 256, 12 + int(s / 3600), int(s / 60) % 60, s % 60,
      p, (i % 10 < 5 ? 200 : 404), i % 7
  }
}' > "$out/flood.log"
echo "$out/flood.log: $(wc -l < "$out/flood.log") lines"
