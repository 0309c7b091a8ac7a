use super::*;
use crate::event::Outcome;

const REF_2026: i64 = 1_780_000_000_000; // 2026-05-28

/// One line parsed by a detecting source (tests of every format's parser use it).
pub(crate) fn one(line: &str) -> Event {
    let mut st = SourceState::new(Format::Auto, REF_2026);
    parse_line(line, &mut st, REF_2026)
}

#[test]
fn sshd_failed_password_invalid_user() {
    let ev = one(
        "Dec 10 06:55:46 LabSZ sshd[24200]: Failed password for invalid user webmaster from 173.234.31.186 port 38926 ssh2",
    );
    assert_eq!(ev.dataset, "sshd");
    assert_eq!(ev.action.as_deref(), Some("ssh_login"));
    assert_eq!(ev.outcome, Outcome::Failure);
    assert_eq!(ev.user_name(), Some("webmaster"));
    assert_eq!(ev.source_ip(), Some("173.234.31.186"));
    assert_eq!(ev.source_port, Some(38926));
    assert_eq!(ev.host_name(), Some("LabSZ"));
    assert_eq!(ev.process_pid, Some(24200));
    // December read in May: last year
    assert_eq!(
        crate::time::format_rfc3339(ev.timestamp),
        "2025-12-10T06:55:46.000Z"
    );
}

#[test]
fn sshd_session_openssh_98_and_accepted_publickey() {
    let ev = one(
        "2026-01-16T06:48:51.123+00:00 web-1 sshd-session[812]: Accepted publickey for alice from 2001:db8::7 port 50122 ssh2: ED25519 SHA256:abc",
    );
    assert_eq!(ev.dataset, "sshd");
    assert_eq!(ev.outcome, Outcome::Success);
    assert_eq!(ev.user_name(), Some("alice"));
    assert_eq!(ev.source_ip(), Some("2001:db8::7"));
    assert_eq!(ev.label("auth_method"), Some("publickey"));
}

#[test]
fn sshd_disconnect_preauth_with_user() {
    let ev = one(
        "Feb 12 14:10:22 h sshd[1]: Disconnected from authenticating user root 1.2.3.4 port 4422 [preauth]",
    );
    assert_eq!(ev.action.as_deref(), Some("ssh_disconnect_preauth"));
    assert_eq!(ev.user_name(), Some("root"));
    assert_eq!(ev.source_ip(), Some("1.2.3.4"));
    let ev = one(
        "Feb 12 14:10:22 h sshd[1]: Disconnecting authenticating user root 1.2.3.4 port 22: Too many authentication failures [preauth]",
    );
    assert_eq!(ev.action.as_deref(), Some("ssh_too_many_auth_failures"));
    assert_eq!(ev.source_ip(), Some("1.2.3.4"));
}

#[test]
fn sshd_tcp_wrappers_refusal() {
    let ev = one(
        "Mar  3 04:12:09 gw sshd[2211]: refused connect from 157.121.175.149 (157.121.175.149)",
    );
    assert_eq!(ev.action.as_deref(), Some("ssh_connection_refused"));
    assert_eq!(ev.outcome, Outcome::Failure);
    assert_eq!(ev.source_ip(), Some("157.121.175.149"));
    // the name as resolved, the address in brackets
    let ev =
        one("Mar  3 04:12:09 gw sshd[2211]: refused connect from scan.example.net (2001:db8::9)");
    assert_eq!(ev.source_ip(), Some("2001:db8::9"));
    // a name alone (no brackets) leaves no address
    let ev = one("Mar  3 04:12:09 gw sshd[2211]: refused connect from unknown");
    assert_eq!(ev.action.as_deref(), Some("ssh_connection_refused"));
    assert_eq!(ev.source_ip(), None);
}

#[test]
fn rsyslog_repeat_sets_count() {
    let ev = one(
        "Dec 10 07:08:28 LabSZ sshd[24208]: message repeated 5 times: [ Failed password for root from 112.95.230.3 port 45378 ssh2]",
    );
    assert_eq!(ev.count, 5);
    assert_eq!(ev.action.as_deref(), Some("ssh_login"));
    assert_eq!(
        ev.message(),
        "Failed password for root from 112.95.230.3 port 45378 ssh2"
    );
}

#[test]
fn an_ipv4_client_on_a_dual_stack_socket_is_its_ipv4_address() {
    for line in [
        "Jan 28 10:16:13 mx dovecot[7508]: imap-login: Disconnected (auth failed, 1 attempts in 6 secs): user=<a>, method=PLAIN, rip=::ffff:203.0.113.5, lip=::ffff:192.0.2.1, TLS, session=<x>",
        "Jun 14 15:16:01 ftp vsftpd(pam_unix)[19939]: authentication failure; logname= uid=0 euid=0 tty=ftp ruser=anonymous rhost=::ffff:203.0.113.5",
        r#"::ffff:203.0.113.5 - - [05/Mar/2026:10:00:01 +0000] "GET /.env HTTP/1.1" 404 153 "-" "curl/8.0""#,
    ] {
        assert_eq!(one(line).source_ip(), Some("203.0.113.5"), "{line}");
    }
    // a real IPv6 address stays as it is
    let ev = one(
        r#"2001:db8::7 - - [05/Mar/2026:10:00:01 +0000] "GET / HTTP/1.1" 200 153 "-" "curl/8.0""#,
    );
    assert_eq!(ev.source_ip(), Some("2001:db8::7"));
}

#[test]
fn pam_in_program_tag() {
    let ev = one(
        "Jun 14 15:16:01 combo sshd(pam_unix)[19939]: authentication failure; logname= uid=0 euid=0 tty=NODEVssh ruser= rhost=218.188.2.4 ",
    );
    assert_eq!(ev.action.as_deref(), Some("pam_auth_failure"));
    assert_eq!(ev.source_ip(), Some("218.188.2.4"));
    // the service, as `pam_unix(sshd:auth)` names it in the newer form
    assert_eq!(ev.label("pam_service"), Some("sshd"));
}

#[test]
fn year_survives_new_year() {
    let mut st = SourceState::new(Format::Auto, REF_2026);
    let a = parse_line(
        "Dec 31 23:59:59 h sshd[1]: Connection closed by 1.2.3.4 port 1 [preauth]",
        &mut st,
        0,
    );
    let b = parse_line(
        "Jan  1 00:00:01 h sshd[1]: Connection closed by 1.2.3.4 port 1 [preauth]",
        &mut st,
        0,
    );
    assert_eq!(b.timestamp - a.timestamp, 2000);
}

#[test]
fn rfc5424_with_structured_data() {
    let ev = one(
        r#"<38>1 2026-01-16T06:48:51Z web-1 sshd 812 - [meta x="a]b"] Failed password for root from 1.2.3.4 port 22 ssh2"#,
    );
    assert_eq!(ev.action.as_deref(), Some("ssh_login"));
    assert_eq!(ev.log_level.as_deref(), Some("info"));
    assert_eq!(ev.host_name(), Some("web-1"));
}

#[test]
fn combined_access_log() {
    let ev = one(
        r#"127.0.0.1 - frank [30/Sep/2021:11:11:54 +0200] "GET /foo?a=1 HTTP/1.1" 404 162 "-" "curl/7.68.0""#,
    );
    assert_eq!(ev.dataset, "http.access");
    assert_eq!(ev.http_method.as_deref(), Some("GET"));
    assert_eq!(ev.url_path(), Some("/foo"));
    assert_eq!(ev.url_query(), Some("a=1"));
    assert_eq!(ev.http_status, Some(404));
    assert_eq!(ev.user_name(), Some("frank"));
    assert_eq!(ev.user_agent(), Some("curl/7.68.0"));
    assert_eq!(
        crate::time::format_rfc3339(ev.timestamp),
        "2021-09-30T09:11:54.000Z"
    );
    let common = one(r#"172.17.0.1 - - [29/Sep/2021:12:37:05 +0000] "GET /x HTTP/1.1" 404 196"#);
    assert_eq!(common.http_status, Some(404));
    assert!(common.user_agent.is_none());
    // escaped quotes stay inside their field; a trailing backslash ends nothing
    let escaped = one(
        r#"10.0.0.1 - - [29/Sep/2021:12:37:05 +0000] "GET /q?s=\"x\" HTTP/1.1" 200 5 "-" "Mozilla \"quoted\" agent""#,
    );
    assert_eq!(escaped.url_original(), Some(r#"/q?s=\"x\""#));
    assert_eq!(escaped.user_agent(), Some(r#"Mozilla \"quoted\" agent"#));
    let cut = one(r#"10.0.0.1 - - [29/Sep/2021:12:37:05 +0000] "GET /x\"#);
    assert!(cut.parse_error.is_some());
}

#[test]
fn nginx_error_rate_limit() {
    let ev = one(
        r#"2021/12/02 11:53:15 [error] 4065777#4065777: *42952950 limiting requests, excess: 5.428 by zone "default_root_zone", client: ::1, server: , request: "GET / HTTP/1.1", host: "la03.d.sb""#,
    );
    assert_eq!(ev.dataset, "nginx.error");
    assert_eq!(ev.action.as_deref(), Some("nginx_rate_limited"));
    assert_eq!(ev.source_ip(), Some("::1"));
    assert_eq!(ev.extra("nginx.limit_zone"), Some("default_root_zone"));
}

#[test]
fn apache_error() {
    let ev = one(
        "[Wed Oct 11 14:32:52.123456 2000] [core:error] [pid 35708:tid 4328636416] [client 72.15.99.187:5523] File does not exist: /var/www/favicon.ico",
    );
    assert_eq!(ev.dataset, "apache.error");
    assert_eq!(ev.source_ip(), Some("72.15.99.187"));
    assert_eq!(ev.message(), "File does not exist: /var/www/favicon.ico");
}

#[test]
fn login_grace_timeouts_name_their_client_in_every_form_sshd_wrote() {
    for (line, ip) in [
        (
            "Jul 22 17:47:22 host sshd[38609]: Timeout before authentication for connection from 123.139.26.46 to 172.21.39.242, pid = 78856",
            "123.139.26.46",
        ),
        (
            "Mar 30 22:33:44 srv1 sshd[3000]: fatal: Timeout before authentication for 10.10.0.3",
            "10.10.0.3",
        ),
        (
            "Mar 30 22:33:46 srv1 sshd-session[3002]: fatal: Timeout before authentication for 10.10.0.5 port 50123",
            "10.10.0.5",
        ),
    ] {
        let ev = one(line);
        assert_eq!(
            ev.action.as_deref(),
            Some("ssh_disconnect_preauth"),
            "{line}"
        );
        assert_eq!(ev.outcome, Outcome::Failure, "{line}");
        assert_eq!(ev.source_ip(), Some(ip), "{line}");
    }
}

#[test]
fn connections_sshd_drops_for_a_penalty_or_for_load_are_told_apart() {
    for (msg, action, outcome, ip, penalty) in [
        (
            "drop connection #0 from [203.0.113.50]:40010 on [192.0.2.1]:22 penalty: failed authentication",
            "ssh_auth_penalty_drop",
            Outcome::Failure,
            Some("203.0.113.50"),
            Some("failed authentication"),
        ),
        (
            "drop connection #3 from [2001:db8:7::60]:51000 on [2001:db8::1]:22 penalty: connections without attempting authentication",
            "ssh_penalty_drop",
            Outcome::Failure,
            Some("2001:db8:7::60"),
            Some("connections without attempting authentication"),
        ),
        (
            "drop connection #2 from [198.51.100.9]:4000 on [192.0.2.1]:2222 penalty: exceeded LoginGraceTime",
            "ssh_penalty_drop",
            Outcome::Failure,
            Some("198.51.100.9"),
            Some("exceeded LoginGraceTime"),
        ),
        // load shedding turns anyone away: no one's failure
        (
            "drop connection #10 from [192.0.2.30]:52000 on [192.0.2.1]:22 past MaxStartups",
            "ssh_maxstartups_drop",
            Outcome::Unknown,
            Some("192.0.2.30"),
            None,
        ),
    ] {
        let line = format!("Jun 12 10:00:08 bastion sshd[900]: {msg}");
        let ev = one(&line);
        assert_eq!(ev.action.as_deref(), Some(action), "{line}");
        assert_eq!(ev.outcome, outcome, "{line}");
        assert_eq!(ev.source_ip(), ip, "{line}");
        assert_eq!(ev.label("penalty"), penalty, "{line}");
    }
}

#[test]
fn sshd_refusals_that_fail2ban_counts_are_failures() {
    for (msg, action, ip, user) in [
        (
            "User root from 198.51.100.77 not allowed because not listed in AllowUsers",
            "ssh_user_not_allowed",
            Some("198.51.100.77"),
            Some("root"),
        ),
        (
            "User bob from 198.51.100.78 not allowed because none of user's groups are listed in AllowGroups",
            "ssh_user_not_allowed",
            Some("198.51.100.78"),
            Some("bob"),
        ),
        (
            "User git not allowed because account is locked",
            "ssh_user_not_allowed",
            None,
            Some("git"),
        ),
        (
            "error: PAM: Authentication failure for root from 203.0.113.91",
            "ssh_login",
            Some("203.0.113.91"),
            Some("root"),
        ),
        (
            "error: PAM: Authentication failure for illegal user admin from 203.0.113.92",
            "ssh_login",
            Some("203.0.113.92"),
            Some("admin"),
        ),
        (
            "error: PAM: User not known to the underlying authentication module for illegal user x from 203.0.113.93",
            "ssh_invalid_user",
            Some("203.0.113.93"),
            Some("x"),
        ),
        (
            "Illegal user oracle from 203.0.113.94",
            "ssh_invalid_user",
            Some("203.0.113.94"),
            Some("oracle"),
        ),
        (
            "ROOT LOGIN REFUSED FROM 203.0.113.95",
            "ssh_login",
            Some("203.0.113.95"),
            Some("root"),
        ),
        (
            "Received disconnect from 203.0.113.96 port 5000:3: com.jcraft.jsch.JSchException: Auth fail [preauth]",
            "ssh_disconnect_preauth",
            Some("203.0.113.96"),
            None,
        ),
        (
            "Bad protocol version identification 'GET / HTTP/1.1' from 2001:db8:5::9 port 43000",
            "ssh_banner_error",
            Some("2001:db8:5::9"),
            None,
        ),
        (
            "Protocol major versions differ for 203.0.113.97: SSH-2.0-OpenSSH_7.4 vs. SSH-1.5-Nmap-SSH1-Hostkey",
            "ssh_banner_error",
            Some("203.0.113.97"),
            None,
        ),
        (
            "ssh_dispatch_run_fatal: Connection from 203.0.113.98 port 5561: invalid format [preauth]",
            "ssh_negotiation_failed",
            Some("203.0.113.98"),
            None,
        ),
        (
            "ssh_dispatch_run_fatal: Connection from authenticating user root 203.0.113.99 port 5564: Broken pipe [preauth]",
            "ssh_disconnect_preauth",
            Some("203.0.113.99"),
            Some("root"),
        ),
    ] {
        let line = format!("Sep 14 08:00:00 gate sshd[1900]: {msg}");
        let ev = one(&line);
        assert_eq!(ev.action.as_deref(), Some(action), "{line}");
        assert_eq!(ev.outcome, Outcome::Failure, "{line}");
        assert_eq!(ev.source_ip(), ip, "{line}");
        assert_eq!(ev.user_name(), user, "{line}");
    }
    // a client that hung up on its own (11) is no failure
    let ev = one(
        "Sep 14 08:00:00 gate sshd[1900]: Received disconnect from 203.0.113.96 port 5000:11: Bye Bye [preauth]",
    );
    assert_eq!(ev.outcome, Outcome::Unknown);
}

#[test]
fn a_client_behind_a_local_proxy_is_taken_from_x_forwarded_for() {
    let line = |peer: &str, xff: &str| {
        format!(
            r#"{peer} - - [05/Mar/2026:10:00:01 +0000] "GET /.env HTTP/1.1" 404 153 "-" "curl/8.0" "{xff}""#
        )
    };
    for (peer, xff, client) in [
        // nginx's stock `main` format behind a balancer on the private network
        ("10.0.0.1", "203.0.113.6", "203.0.113.6"),
        // a forged entry to the left is passed over; local hops to the right too
        (
            "10.0.0.1",
            "198.51.100.1, 203.0.113.6, 10.0.3.4",
            "203.0.113.6",
        ),
        ("127.0.0.1", "2001:db8::7", "2001:db8::7"),
        // all local: the leftmost
        ("10.0.0.1", "192.168.1.20, 10.0.3.4", "192.168.1.20"),
        // a public peer is the client whatever it claims
        ("203.0.113.9", "198.51.100.1", "203.0.113.9"),
        // no header, or junk
        ("10.0.0.1", "-", "10.0.0.1"),
        ("10.0.0.1", "unknown", "10.0.0.1"),
    ] {
        // as written to a file, and as sent to syslog (`access_log syslog:`)
        for line in [
            line(peer, xff),
            format!("<190>Mar  5 10:00:01 web1 nginx: {}", line(peer, xff)),
        ] {
            let ev = one(&line);
            assert_eq!(ev.source_ip(), Some(client), "{line}");
            let forwarded = (client != peer).then_some(peer);
            assert_eq!(ev.label("forwarded_by"), forwarded, "{line}");
            assert_eq!(ev.user_agent(), Some("curl/8.0"));
            assert_eq!(ev.action.as_deref(), Some("http_request"), "{line}");
        }
    }
}

#[test]
fn an_x_forwarded_for_list_or_a_dash_in_place_of_the_client_is_read() {
    // Apache's `%{X-Forwarded-For}i %l %u %t "%r" %>s %b` behind a balancer
    let line = |client: &str| {
        format!(
            r#"{client} - - [05/Mar/2026:10:00:01 +0000] "GET /?q=%3Cscript%3E HTTP/1.1" 200 153 "-" "curl/8.0""#
        )
    };
    for (client, ip, domain) in [
        ("203.0.113.6", Some("203.0.113.6"), None),
        // the rightmost address that is not a local proxy
        ("198.51.100.1, 203.0.113.6", Some("203.0.113.6"), None),
        ("198.51.100.1,203.0.113.6", Some("203.0.113.6"), None),
        ("203.0.113.6, 10.0.3.4", Some("203.0.113.6"), None),
        (
            "198.51.100.1, 203.0.113.6, 10.0.3.4",
            Some("203.0.113.6"),
            None,
        ),
        // with a virtual host before it
        (
            "shop.example:443 198.51.100.1, 203.0.113.6",
            Some("203.0.113.6"),
            Some("shop.example"),
        ),
        // a request that came direct has no header: no client, still a request
        ("-", None, None),
    ] {
        let line = line(client);
        let ev = one(&line);
        assert_eq!(ev.action.as_deref(), Some("http_request"), "{line}");
        assert_eq!(ev.source_ip(), ip, "{line}");
        assert_eq!(ev.extra("url.domain"), domain, "{line}");
        assert_eq!(ev.user_agent(), Some("curl/8.0"), "{line}");
        assert_eq!(ev.label("client_host"), None, "{line}");
    }
    // a list cut off before the user fields is not an access line
    let ev = one(r#"198.51.100.1, [05/Mar/2026:10:00:01 +0000] "GET / HTTP/1.1" 200 153"#);
    assert_ne!(ev.action.as_deref(), Some("http_request"));
}

#[test]
fn refused_basic_credentials_are_auth_failures_in_error_and_access_logs() {
    let cases = [
        (
            r#"2021/09/30 09:23:53 [error] 1925800#1925800: *17 user "foo" was not found in "/tmp/a.htpasswd", client: 127.0.0.1, server: _, request: "GET /admin HTTP/1.1", host: "localhost""#,
            "foo",
            "/admin",
        ),
        (
            r#"2021/09/30 09:23:54 [error] 1925800#1925800: *18 user "bob": password mismatch, client: 127.0.0.1, server: _, request: "GET / HTTP/1.1", host: "localhost""#,
            "bob",
            "/",
        ),
        (
            "[Thu Oct 13 12:24:49.880562 2022] [auth_basic:error] [pid 10:tid 14012] [client 127.0.0.1:50229] AH01618: user sss not found: /private",
            "sss",
            "/private",
        ),
        (
            r#"[Thu Oct 13 12:24:50.880562 2022] [auth_basic:error] [pid 10:tid 14012] [client 127.0.0.1:50230] AH01617: user bob: authentication failure for "/private": Password Mismatch"#,
            "bob",
            "/private",
        ),
        (
            r#"[Thu Oct 13 12:24:51 2011] [error] [client 127.0.0.1] user bob: authentication failure for "/": Password Mismatch"#,
            "bob",
            "/",
        ),
        (
            r#"127.0.0.1 - bob [06/Mar/2022:16:14:13 +0000] "GET /private HTTP/1.1" 401 141 "-" "curl/8.0""#,
            "bob",
            "/private",
        ),
    ];
    for (line, user, url) in cases {
        let ev = one(line);
        assert_eq!(ev.action.as_deref(), Some("http_auth_failure"), "{line}");
        assert_eq!(ev.user_name(), Some(user), "{line}");
        assert_eq!(ev.url_original(), Some(url), "{line}");
        assert_eq!(ev.source_ip(), Some("127.0.0.1"), "{line}");
    }
    // the server asking for credentials, a stale token, and other errors
    for line in [
        r#"2021/09/30 09:23:53 [error] 19#19: *17 no user/password was provided for basic authentication, client: 127.0.0.1, server: _, request: "GET / HTTP/1.1""#,
        r#"127.0.0.1 - - [06/Mar/2022:16:14:13 +0000] "GET /private HTTP/1.1" 401 141 "-" "curl/8.0""#,
        r#"127.0.0.1 - bob [06/Mar/2022:16:14:13 +0000] "GET /private HTTP/1.1" 200 141 "-" "curl/8.0""#,
        "[Thu Oct 13 12:24:49.880562 2022] [core:error] [pid 10] [client 127.0.0.1:50229] AH00128: File does not exist: /var/www/user bob not found: x",
    ] {
        assert_ne!(
            one(line).action.as_deref(),
            Some("http_auth_failure"),
            "{line}"
        );
    }
}

#[test]
fn kernel_oom_bare_and_dmesg() {
    let ev = one(
        "Killed process 1012 (heapster) total-vm:327128kB, anon-rss:306328kB, file-rss:11132kB",
    );
    assert_eq!(ev.action.as_deref(), Some("oom_kill"));
    assert_eq!(ev.extra("process.target.name"), Some("heapster"));
    let ev = one("[ 8123.456] EXT4-fs (sda1): Remounting filesystem read-only");
    assert_eq!(ev.action.as_deref(), Some("fs_read_only"));
    let ev = one(
        "Jan 10 10:00:00 node-1 kernel: [ 11.1] Out of memory: Killed process 4242 (java) total-vm:1kB",
    );
    assert_eq!(ev.action.as_deref(), Some("oom_kill"));
    assert_eq!(ev.host_name(), Some("node-1"));
}

/// Regression: syslog lines that keep the kernel's uptime stamp
/// (`kernel: [869507.505196] …`) lost every problem whose message must
/// start a certain way, and a segfault's program took the stamp as part
/// of its name (`[869507.505196] su`).
#[test]
fn kernel_messages_forwarded_with_their_uptime_stamp_read_as_bare_ones() {
    let ev = one(
        "2023-10-05T11:47:20.799042+02:00 leto kernel: [869507.505196] su[1433535]: segfault at 7f1f9b891000 ip 00007f1f9b870d7d sp 00007ffd5dab97f0 error 6 in ld-linux-x86-64.so.2[7f1f9b85e000+25000] likely on CPU 2 (core 2, socket 0)",
    );
    assert_eq!(ev.action.as_deref(), Some("segfault"));
    assert_eq!(ev.extra("process.target.name"), Some("su"));
    assert_eq!(ev.extra("process.target.pid"), Some("1433535"));
    assert_eq!(ev.extra("dll.name"), Some("ld-linux-x86-64.so.2"));
    let ev = one(
        "Oct  5 11:47:20 leto kernel: [  242.119482] INFO: task jbd2/sda1-8:181 blocked for more than 120 seconds.",
    );
    assert_eq!(ev.action.as_deref(), Some("hung_task"));
    assert_eq!(ev.extra("process.target.name"), Some("jbd2/sda1-8"));
    let ev = one(
        "Oct  5 11:47:20 leto kernel: [ 4242.4242] BUG: unable to handle kernel NULL pointer dereference at 0000000000000078",
    );
    assert_eq!(ev.action.as_deref(), Some("kernel_oops"));
    // a fault at an address no file is mapped at names no file
    let ev = one("[ 9.9] app[77]: segfault at 0 ip 0000000000000000 sp 00007ffd5dab97f0 error 14");
    assert_eq!(ev.action.as_deref(), Some("segfault"));
    assert_eq!(ev.extra("process.target.name"), Some("app"));
    assert_eq!(ev.extra("dll.name"), None);
}

#[test]
fn kubelet_crashloop_and_describe_events() {
    let ev = one(
        r#"E0127 07:27:45.123456    1234 pod_workers.go:1298] "Error syncing pod, skipping" err="failed to \"StartContainer\" for \"exporter\" with CrashLoopBackOff: \"back-off 5m0s restarting failed container=exporter pod=logging-agent_default(c84d)\"" pod="default/logging-agent""#,
    );
    assert_eq!(ev.action.as_deref(), Some("crash_loop_backoff"));
    assert_eq!(ev.extra("kubernetes.pod.name"), Some("logging-agent"));
    assert_eq!(ev.log_level.as_deref(), Some("error"));
    let ev = one(
        "  Warning  BackOff    2m38s (x26 over 7m37s)  kubelet            Back-off restarting failed container downloader in pod logging-agent_default(c84db522)",
    );
    assert_eq!(ev.action.as_deref(), Some("crash_loop_backoff"));
    assert_eq!(ev.count, 26);
    assert_eq!(ev.extra("kubernetes.container.name"), Some("downloader"));
    assert_eq!(ev.service_name(), Some("logging-agent"));
}

#[test]
fn json_mapping_and_logfmt() {
    let mut st = SourceState::new(Format::Auto, REF_2026);
    st.json.0.insert("source.ip".into(), "req.remote".into());
    let ev = parse_line(
        r#"{"ts":"2026-01-16T06:48:51Z","level":"ERROR","msg":"login failed","req":{"remote":"203.0.113.50"},"user":"bob","team":"pay"}"#,
        &mut st,
        0,
    );
    assert_eq!(ev.source_ip(), Some("203.0.113.50"));
    assert_eq!(ev.user_name(), Some("bob"));
    assert_eq!(ev.log_level.as_deref(), Some("error"));
    assert_eq!(ev.message(), "login failed");
    assert_eq!(ev.label("team"), Some("pay"));
    let ev = one(r#"ts=2026-01-16T06:48:51Z level=warn msg="db slow" service=api status=503"#);
    assert_eq!(ev.service_name(), Some("api"));
    assert_eq!(ev.http_status, Some(503));
    assert_eq!(ev.message(), "db slow");
}

#[test]
fn nginx_json_log_format_by_its_variables() {
    // log_format json escape=json '{"time_local":"$time_local","remote_addr":…}'
    let ev = one(
        r#"{"time_local":"04/Dec/2026:10:00:00 +0100","remote_addr":"203.0.113.5","remote_user":"-","request":"GET /cgi-bin/.%2e/.%2e/bin/sh HTTP/1.7","status":"400","body_bytes_sent":"157","request_time":"0.002","http_referer":"-","http_user_agent":"-"}"#,
    );
    assert_eq!(ev.category, Some("web"));
    assert_eq!(ev.source_ip(), Some("203.0.113.5"));
    assert_eq!(ev.user_name(), None);
    assert_eq!(ev.http_method.as_deref(), Some("GET"));
    assert_eq!(ev.url_original(), Some("/cgi-bin/.%2e/.%2e/bin/sh"));
    assert_eq!(ev.extra("http.version"), Some("1.7"));
    assert_eq!(ev.http_status, Some(400));
    assert_eq!(ev.http_body_bytes, Some(157));
    assert_eq!(ev.duration_ns, Some(2_000_000));
    assert_eq!(ev.user_agent(), None);
    assert_eq!(ev.extra("http.request.referrer"), None);
    assert_eq!(
        crate::time::format_rfc3339(ev.timestamp),
        "2026-12-04T09:00:00.000Z"
    );
    let ev = one(
        r#"{"time_iso8601":"2026-12-04T10:00:00+00:00","remote_addr":"203.0.113.6","request_method":"POST","request_uri":"/xmlrpc.php","status":200,"http_referer":"https://example.com/","http_user_agent":"WordPress/6.4"}"#,
    );
    assert_eq!(ev.http_method.as_deref(), Some("POST"));
    assert_eq!(ev.url_original(), Some("/xmlrpc.php"));
    assert_eq!(
        ev.extra("http.request.referrer"),
        Some("https://example.com/")
    );
    assert_eq!(ev.user_agent(), Some("WordPress/6.4"));
    assert_eq!(
        crate::time::format_rfc3339(ev.timestamp),
        "2026-12-04T10:00:00.000Z"
    );
    // a "request" that is no request line stays a label
    let ev = one(r#"{"ts":"2026-12-04T10:00:00Z","msg":"done","request":"abc-123"}"#);
    assert_eq!(ev.url_original(), None);
    assert_eq!(ev.label("request"), Some("abc-123"));
}

#[test]
fn alertmanager_payload_one_event_per_alert() {
    let body = r#"{"version":"4","groupKey":"{}:{alertname=\"X\"}","status":"firing","receiver":"r","groupLabels":{"alertname":"X"},"alerts":[{"status":"firing","labels":{"alertname":"X","instance":"web-1:9100","severity":"critical"},"annotations":{"summary":"down"},"startsAt":"2026-01-16T06:48:51Z","endsAt":"0001-01-01T00:00:00Z","fingerprint":"abc"},{"status":"resolved","labels":{"alertname":"X","instance":"web-2:9100"},"annotations":{},"startsAt":"2026-01-16T06:40:00Z","endsAt":"2026-01-16T06:50:00Z","fingerprint":"def"}]}"#;
    let mut st = SourceState::new(Format::Auto, REF_2026);
    let mut out = Vec::new();
    parse_into(body, &mut st, 0, &mut out);
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].host_name(), Some("web-1"));
    assert_eq!(out[0].action.as_deref(), Some("alert_firing"));
    assert_eq!(out[1].action.as_deref(), Some("alert_resolved"));
    assert_eq!(
        crate::time::format_rfc3339(out[1].timestamp),
        "2026-01-16T06:50:00.000Z"
    );
}

#[test]
fn unknown_line_is_kept_and_marked() {
    let ev = one("some words nobody parses");
    assert!(ev.parse_error.is_some());
    assert_eq!(ev.original, "some words nobody parses");
    assert_eq!(ev.to_json()["error.type"], "parse_failure");
}

mod no_panics {
    use super::*;
    use proptest::prelude::*;

    const SEEDS: &[&str] = &[
        "Dec 10 06:55:46 LabSZ sshd[24200]: Failed password for invalid user webmaster from 173.234.31.186 port 38926 ssh2",
        "<38>1 2026-01-16T06:48:51Z web-1 sshd 812 - [meta x=\"a]b\"] Disconnected from authenticating user root 1.2.3.4 port 22 [preauth]",
        r#"127.0.0.1 - frank [30/Sep/2021:11:11:54 +0200] "GET /foo?a=1 HTTP/1.1" 404 162 "-" "curl/7.68.0""#,
        r#"2021/12/02 11:53:15 [error] 4065777#4065777: *4 limiting requests, excess: 5.428 by zone "z", client: ::1, server: , request: "GET / HTTP/1.1""#,
        "[Wed Oct 11 14:32:52.123456 2000] [core:error] [pid 35708:tid 4328636416] [client 72.15.99.187:5523] File does not exist",
        r#"{"ts":"2026-01-16T06:48:51Z","level":"ERROR","msg":"x","req":{"remote":"203.0.113.50"}}"#,
        r#"ts=2026-01-16T06:48:51Z level=warn msg="db slow" status=503"#,
        r#"E0127 07:27:45.123456 1234 pod_workers.go:1298] "Error" err="CrashLoopBackOff" pod="default/a""#,
        "  Warning  BackOff    2m38s (x26 over 7m37s)  kubelet  Back-off restarting failed container d in pod a_b(c)",
        "[ 8123.456] EXT4-fs (sda1): Remounting filesystem read-only",
        r#"{"version":"4","groupKey":"g","status":"firing","receiver":"r","alerts":[{"labels":{"alertname":"X"},"startsAt":"2026-01-16T06:48:51Z"}]}"#,
        "node=h type=USER_AUTH msg=audit(1684331127.071:3213): pid=3411 uid=0 auid=4294967295 msg='op=PAM:authentication acct=\"root\" exe=\"/usr/sbin/sshd\" addr=203.0.113.9 terminal=ssh res=failed'\u{1d}UID=\"root\" AUID=\"unset\"",
        "type=EXECVE msg=audit(08/31/2017 22:59:50.870:756395) : argc=2 a0=\"sh\" a1=2D6320696420",
        "Mar  1 12:00:00 db-2 kernel: audit: type=1100 audit(1772366400.500:81): pid=901 msg='op=login acct=28696E76616C696429 res=failed'",
        "Jan 27 11:02:49 machine pkexec[387348]: srcuser: The value for the SHELL variable was not found the /etc/shells file [USER=root] [TTY=/dev/pts/3] [CWD=/tmp] [COMMAND=GCONV_PATH=./gconv SHELL=/fake/shell]",
    ];

    proptest! {
        /// Any text, and any cut or splice of real lines, parses to events without panicking.
        #[test]
        fn parsing_never_panics(seed in 0usize..SEEDS.len(), cut in 0usize..200, junk in "\\PC{0,40}", noise in any::<String>()) {
            let s = SEEDS[seed];
            let cut = (0..=cut.min(s.len())).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0);
            let mut st = SourceState::new(Format::Auto, REF_2026);
            let mut out = Vec::new();
            for line in [format!("{}{junk}", &s[..cut]), format!("{junk}{}", &s[cut..]), noise.clone()] {
                parse_into(&line, &mut st, 0, &mut out);
            }
            let mut c = crate::cluster::Clusterer::new(crate::cluster::DrainConfig::default());
            c.process(&mut out);
            for ev in &out {
                let _ = ev.to_json();
            }
        }
    }
}

/// Regression: a `<` followed by multi-byte characters made the PRI scan
/// slice inside a character and panic.
#[test]
fn pri_scan_on_multibyte_line_does_not_panic() {
    let ev = one("<ਊᝮ*%ð%:ශ'Q authenticating user root");
    assert!(ev.parse_error.is_some());
}

#[test]
fn rsyslog_forward_format_without_the_tag_colon() {
    let ev = one(
        "<38>2026-11-22T10:58:43.603267+00:00 vm sshd Failed password for invalid user user0 from 203.0.113.9 port 5000 ssh2",
    );
    assert_eq!(ev.dataset, "sshd");
    assert_eq!(ev.host_name(), Some("vm"));
    assert_eq!(ev.source_ip(), Some("203.0.113.9"));
    // an unknown first word is not taken for a tag
    let ev = one("<38>2026-11-22T10:58:43Z vm hello world");
    assert!(ev.parse_error.is_some());
}

mod ip_check {
    use super::super::is_ip;
    use proptest::prelude::*;

    proptest! {
        /// The byte-pass check agrees with the standard parser: near-misses
        /// (leading zeros, octets over 255, five parts, ports, IPv6) included.
        #[test]
        fn is_ip_agrees_with_std(s in "([0-9]{1,4}\\.){0,4}[0-9]{0,4}(:[0-9a-f]{0,4}){0,3}|[0-9a-f:.]{0,20}|::ffff:[0-9]{1,3}(\\.[0-9]{1,3}){3}") {
            prop_assert_eq!(is_ip(&s), s.parse::<std::net::IpAddr>().is_ok(), "{}", s);
        }
    }

    #[test]
    fn dotted_quads_and_their_near_misses() {
        for ok in [
            "0.0.0.0",
            "255.255.255.255",
            "10.20.4.97",
            "::1",
            "::ffff:1.2.3.4",
        ] {
            assert!(is_ip(ok), "{ok}");
        }
        for bad in [
            "256.1.1.1",
            "01.2.3.4",
            "1.2.3",
            "1.2.3.4.5",
            "1.2.3.4 ",
            "1..2.3",
            "",
            "1.2.3.4:80",
        ] {
            assert!(!is_ip(bad), "{bad}");
        }
    }
}

#[test]
fn values_found_in_the_line_are_ranges_of_it_and_others_are_copies() {
    use crate::event::Text;
    let line = r#"127.0.0.1 - frank [30/Sep/2021:11:11:54 +0200] "GET /foo?a=1 HTTP/1.1" 404 162 "-" "curl/7.68.0""#;
    let ev = one(line);
    assert_eq!(ev.source_ip, Some(Text::Span(0, 9)));
    assert_eq!(ev.user_name, Some(Text::Span(12, 17)));
    assert!(matches!(ev.url_original, Some(Text::Span(..))));
    assert_eq!(ev.url_original(), Some("/foo?a=1"));
    let with_referrer = one(&line.replacen(r#""-""#, r#""https://example.org/""#, 1));
    assert_eq!(
        with_referrer.extra("http.request.referrer"),
        Some("https://example.org/")
    );
    assert!(matches!(with_referrer.extra[..], [(_, Text::Span(..))]));
    // the ranges outlive the buffer the line was read from
    let kept = ev.clone();
    drop(ev);
    assert_eq!(kept.user_agent(), Some("curl/7.68.0"));
    // an escaped JSON value is unescaped into a string of its own; a plain one is a range
    let ev = one(r#"{"message":"m","user_agent":"a \"b\"","source.ip":"192.0.2.1"}"#);
    assert_eq!(ev.user_agent, Some(Text::Own(r#"a "b""#.into())));
    assert!(matches!(ev.source_ip, Some(Text::Span(..))));
    assert_eq!(ev.source_ip(), Some("192.0.2.1"));
    // set after parsing, even from the line itself: a copy
    let mut ev = one(line);
    let user = ev.original[12..17].to_owned();
    ev.set_user_name(&user);
    assert_eq!(ev.user_name, Some(Text::Own("frank".into())));
    // an access line forwarded by syslog keeps its fields as ranges of the whole line
    let ev = one(&format!("<190>Sep 30 11:11:54 web-1 nginx: {line}"));
    assert_eq!(ev.source_ip(), Some("127.0.0.1"));
    assert!(matches!(ev.source_ip, Some(Text::Span(s, _)) if s > 0));
    assert_eq!(ev.user_agent(), Some("curl/7.68.0"));
}

proptest::proptest! {
    /// The plain scans parsers use find what `str`'s searches find.
    #[test]
    fn plain_scans_find_what_str_finds(
        s in "[a-c :()\\[\\]é]{0,40}",
        needle in "[a-c :()\\[\\]é]{1,4}",
        b in proptest::sample::select(vec![b' ', b'[', b'(', b'a']),
    ) {
        proptest::prop_assert_eq!(find_str(&s, &needle), s.find(needle.as_str()));
        proptest::prop_assert_eq!(rfind_str(&s, &needle), s.rfind(needle.as_str()));
        proptest::prop_assert_eq!(split_once_str(&s, &needle), s.split_once(needle.as_str()));
        proptest::prop_assert_eq!(find_byte(&s, b), s.find(b as char));
        let c = b as char;
        proptest::prop_assert_eq!(
            split_either(&s, b' ', b).collect::<Vec<_>>(),
            s.split([' ', c]).collect::<Vec<_>>()
        );
    }
}

#[test]
fn pkexec_commands_refusals_and_the_pwnkit_trace() {
    for (line, action, user, target, command) in [
        (
            "Jan 27 10:58:02 machine pkexec[387101]: alice: Executing command [USER=root] [TTY=/dev/pts/1] [CWD=/home/alice] [COMMAND=/usr/bin/apt update]",
            "pkexec_command",
            "alice",
            "root",
            "/usr/bin/apt update",
        ),
        (
            "Jan 27 11:01:10 machine pkexec[387200]: bob: Error executing command as another user: Not authorized [USER=root] [TTY=/dev/pts/2] [CWD=/home/bob] [COMMAND=/usr/bin/gparted]",
            "pkexec_not_authorized",
            "bob",
            "root",
            "/usr/bin/gparted",
        ),
        (
            "Jan 27 11:02:49 machine pkexec[387348]: srcuser: The value for the SHELL variable was not found the /etc/shells file [USER=root] [TTY=/dev/pts/3] [CWD=/tmp/poc-cve-2021-4034-main] [COMMAND=GCONV_PATH=./gconv PATH=GCONV_PATH=. SHELL=/fake/shell CHARSET=payload]",
            "pkexec_unsafe_environment",
            "srcuser",
            "root",
            "GCONV_PATH=./gconv PATH=GCONV_PATH=. SHELL=/fake/shell CHARSET=payload",
        ),
        (
            // pkexec's own spelling, and a command holding brackets
            "Jan 27 11:20:05 db-1 pkexec[5510]: mallory: The value for environment variable XAUTHORITY contains suscipious content [USER=root] [TTY=/dev/pts/0] [CWD=/tmp] [COMMAND=/bin/sh -c [x]]",
            "pkexec_unsafe_environment",
            "mallory",
            "root",
            "/bin/sh -c [x]",
        ),
    ] {
        let ev = one(line);
        assert_eq!(ev.dataset, "auth", "{line}");
        assert_eq!(ev.action.as_deref(), Some(action), "{line}");
        assert_eq!(ev.user_name(), Some(user), "{line}");
        assert_eq!(ev.extra("user.target.name"), Some(target), "{line}");
        assert_eq!(ev.extra("process.command_line"), Some(command), "{line}");
    }
    // PAM lines pkexec writes are PAM's; other text is left unparsed
    let ev = one(
        "Jan 27 10:58:02 machine pkexec[387101]: pam_unix(polkit-1:session): session opened for user root(uid=0) by alice(uid=1000)",
    );
    assert_eq!(ev.action.as_deref(), Some("session_opened"));
    let ev = one("Jan 27 10:58:02 machine pkexec[387101]: alice: something else entirely");
    assert_eq!(ev.action, None);
    assert_eq!(ev.user_name(), None);
}

#[test]
fn audit_records_keep_their_stamp_and_read_as_ecs_fields() {
    // a PAM authentication failure, as auditd writes it
    let ev = one(
        "type=USER_AUTH msg=audit(1684331127.071:3213): pid=3411 uid=0 auid=4294967295 ses=4294967295 msg='op=PAM:authentication grantors=? acct=\"root\" exe=\"/usr/sbin/sshd\" hostname=203.0.113.9 addr=203.0.113.9 terminal=ssh res=failed'",
    );
    assert_eq!(ev.dataset, "auditd");
    assert_eq!(ev.action.as_deref(), Some("user_auth"));
    assert_eq!(ev.outcome, Outcome::Failure);
    assert_eq!(
        crate::time::format_rfc3339(ev.timestamp),
        "2023-05-17T13:45:27.071Z"
    );
    assert_eq!(ev.user_name(), Some("root"));
    assert_eq!(ev.source_ip(), Some("203.0.113.9"));
    // the client's name is not the host that logged
    assert_eq!(ev.host_name(), None);
    assert_eq!(ev.extra("process.executable"), Some("/usr/sbin/sshd"));
    assert_eq!(ev.label("terminal"), Some("ssh"));

    // an execve, enriched: the login user by name
    let ev = one(
        "node=web-3 type=SYSCALL msg=audit(1684331127.071:3212): arch=c000003e syscall=59 success=yes exit=0 ppid=26843 pid=27282 auid=1000 uid=1000 tty=pts2 comm=\"blitz64\" exe=\"/tmp/blitz64\" key=(null)\u{1d}ARCH=x86_64 SYSCALL=execve AUID=\"alice\" UID=\"alice\"",
    );
    assert_eq!(ev.host_name(), Some("web-3"));
    assert_eq!(ev.action.as_deref(), Some("syscall"));
    assert_eq!(ev.outcome, Outcome::Success);
    assert_eq!(ev.process_name(), Some("blitz64"));
    assert_eq!(ev.process_pid, Some(27282));
    assert_eq!(ev.extra("process.parent.pid"), Some("26843"));
    assert_eq!(ev.extra("process.executable"), Some("/tmp/blitz64"));
    assert_eq!(ev.extra("user.id"), Some("1000"));
    assert_eq!(ev.extra("rule.name"), None);
    assert_eq!(ev.user_name(), Some("alice"));
    assert_eq!(ev.label("syscall"), Some("59"));
    assert!(!ev.message().contains("AUID"), "{}", ev.message());

    // arguments audit wrote in hex (they hold spaces or quotes) are decoded
    let ev = one(
        "type=EXECVE msg=audit(1684331127.080:3214): argc=3 a0=\"sh\" a1=\"-c\" a2=6563686F2022612062227C20626173653634202D64",
    );
    assert_eq!(
        ev.extra("process.command_line"),
        Some("sh -c echo \"a b\"| base64 -d")
    );
    let ev =
        one("type=PROCTITLE msg=audit(1684331127.080:3214): proctitle=2F62696E2F7368002D63006964");
    assert_eq!(ev.extra("process.command_line"), Some("/bin/sh -c id"));

    // sent on through syslog by audisp; an invalid user's `acct` is no user
    let ev = one(
        "Jan  5 10:00:00 web-4 audisp-syslog: type=USER_LOGIN msg=audit(1704448800.250:77): pid=3411 uid=0 auid=4294967295 ses=4294967295 msg='op=login acct=28696E76616C6964207573657229 exe=\"/usr/sbin/sshd\" hostname=? addr=198.51.100.4 terminal=sshd res=failed'",
    );
    assert_eq!(ev.dataset, "auditd");
    assert_eq!(ev.host_name(), Some("web-4"));
    assert_eq!(ev.action.as_deref(), Some("user_login"));
    assert_eq!(ev.outcome, Outcome::Failure);
    assert_eq!(
        crate::time::format_rfc3339(ev.timestamp),
        "2024-01-05T10:00:00.250Z"
    );
    assert_eq!(ev.source_ip(), Some("198.51.100.4"));
    assert_eq!(ev.user_name(), None);
    assert!(ev.message().starts_with("pid=3411 "), "{}", ev.message());

    // key=value lines that are not audit records stay logfmt
    assert_eq!(
        one("type=info msg=\"started\" service=api").dataset,
        "logfmt"
    );
}

#[test]
fn audit_records_from_ausearch_the_kernel_and_the_journal() {
    // `ausearch -i`: the stamp as a date, names for ids, `(unknown)` for an invalid user
    let ev = one(
        "type=USER_AUTH msg=audit(08/31/2017 22:59:50.870:756395) : pid=32288 uid=root auid=unset ses=unset subj=system_u:system_r:sshd_t:s0-s0:c0.c1023 msg='op=password acct=(unknown) exe=/usr/sbin/sshd hostname=? addr=58.56.184.242 terminal=ssh res=failed'",
    );
    assert_eq!(ev.dataset, "auditd");
    assert_eq!(
        crate::time::format_rfc3339(ev.timestamp),
        "2017-08-31T22:59:50.870Z"
    );
    assert_eq!(ev.action.as_deref(), Some("user_auth"));
    assert_eq!(ev.outcome, Outcome::Failure);
    assert_eq!(ev.source_ip(), Some("58.56.184.242"));
    assert_eq!(ev.user_name(), None);
    assert_eq!(ev.extra("user.id"), None);
    assert_eq!(ev.label("op"), Some("password"));

    // the kernel's copy where no auditd runs: numbered types
    let ev = one(
        "Mar  1 12:00:00 db-2 kernel: audit: type=1100 audit(1772366400.500:81): pid=901 uid=0 auid=4294967295 ses=4294967295 msg='op=PAM:authentication grantors=? acct=\"postgres\" exe=\"/usr/sbin/sshd\" hostname=192.0.2.8 addr=192.0.2.8 terminal=ssh res=failed'",
    );
    assert_eq!(ev.dataset, "auditd");
    assert_eq!(ev.host_name(), Some("db-2"));
    assert_eq!(ev.action.as_deref(), Some("user_auth"));
    assert_eq!(ev.user_name(), Some("postgres"));
    assert_eq!(
        crate::time::format_rfc3339(ev.timestamp),
        "2026-03-01T12:00:00.500Z"
    );

    // the journal's: the type first, the syslog header's time
    let ev = one(
        "2026-03-01T12:00:01+00:00 db-2 audit[901]: USER_AUTH pid=901 uid=0 auid=4294967295 ses=4294967295 msg='op=PAM:authentication grantors=? acct=\"postgres\" exe=\"/usr/sbin/sshd\" hostname=192.0.2.8 addr=192.0.2.8 terminal=ssh res=failed'",
    );
    assert_eq!(ev.dataset, "auditd");
    assert_eq!(ev.action.as_deref(), Some("user_auth"));
    assert_eq!(ev.outcome, Outcome::Failure);
    assert_eq!(ev.source_ip(), Some("192.0.2.8"));
    assert_eq!(
        crate::time::format_rfc3339(ev.timestamp),
        "2026-03-01T12:00:01.000Z"
    );
    assert!(ev.message().starts_with("pid=901 "), "{}", ev.message());

    // other kernel lines stay the kernel's
    let ev = one("Mar  1 12:00:00 db-2 kernel: Out of memory: Killed process 4242 (java)");
    assert_eq!(ev.dataset, "kernel");
}
