//! Kernel messages, bare (`Killed process 1012 (heapster) total-vm:…`), from
//! dmesg (`[12345.678901] …`) or from syslog (`kernel: …`).
//!
//! Actions follow node-problem-detector's problem list: `oom_kill` (the
//! "Killed process" line: one per kill, whichever kernel version wrote it),
//! `oom_invoked` (the older "Kill process … or sacrifice child" notice, not a
//! second kill), `hung_task`, `kernel_oops`, `fs_error`, `fs_read_only`,
//! `disk_full`, `segfault` (with the file the faulting code came from in
//! `dll.name`), `netdevice_stuck`.

use std::borrow::Cow;

use crate::event::{Event, Outcome};

/// `[  123.456789] message`
pub fn parse_dmesg(ev: &mut Event, line: &str) -> bool {
    match after_uptime(line) {
        Some(msg) => {
            let at = super::offset_in(line, msg);
            ev.set_message_range(at, line.len());
            ev.dataset = Cow::Borrowed("kernel");
            parse_message(ev, msg);
            true
        }
        None => false,
    }
}

/// The message after the kernel's uptime stamp (`[  123.456789] `), if it
/// has one.
fn after_uptime(line: &str) -> Option<&str> {
    let (uptime, msg) = line.strip_prefix('[')?.split_once("] ")?;
    uptime.trim().parse::<f64>().is_ok().then_some(msg)
}

/// Classifies a kernel message; false when it is none of the known problems.
pub fn parse_message(ev: &mut Event, msg: &str) -> bool {
    // syslog keeps the uptime stamp where klogd or imklog forwarded it
    // (`kernel: [869507.505196] su[1433535]: segfault at …`)
    let msg = after_uptime(msg).unwrap_or(msg);
    let (action, level): (&'static str, &'static str) = if let Some(i) = msg.find("Killed process ")
    {
        target(ev, &msg[i + "Killed process ".len()..]);
        ("oom_kill", "error")
    } else if let Some(i) = msg
        .find("Kill process ")
        .filter(|_| msg.contains("out of memory"))
    {
        target(ev, &msg[i + "Kill process ".len()..]);
        ("oom_invoked", "warning")
    } else if msg.starts_with("INFO: task ") && msg.contains(" blocked for more than ") {
        if let Some(task) = msg["INFO: task ".len()..].split(' ').next()
            && let Some((name, pid)) = task.trim_end_matches(':').rsplit_once(':')
        {
            ev.push_extra("process.target.name", name);
            ev.push_extra("process.target.pid", pid);
        }
        ("hung_task", "error")
    } else if msg.starts_with("BUG: unable to handle kernel")
        || msg.starts_with("divide error:")
        || msg.starts_with("Oops:")
        || msg.starts_with("kernel BUG at")
    {
        ("kernel_oops", "critical")
    } else if msg.contains("Remounting filesystem read-only")
        || msg.contains("remounted read-only")
        || msg.contains("Read-only file system")
    {
        ("fs_read_only", "critical")
    } else if msg.contains("No space left on device") {
        ("disk_full", "critical")
    } else if msg.starts_with("EXT4-fs error") || msg.starts_with("XFS") && msg.contains("shutdown")
    {
        ("fs_error", "error")
    } else if let Some((prog, fault)) = msg.split_once(": segfault at ") {
        if let Some((name, pid)) = prog.rsplit_once('[') {
            ev.push_extra("process.target.name", name);
            ev.push_extra("process.target.pid", pid.trim_end_matches(']'));
        }
        // `… error 6 in ld-linux-x86-64.so.2[7f1f9b85e000+25000]`: the
        // file the faulting code was mapped from (absent when the address
        // was in none)
        if let Some((_, mapped)) = fault.split_once(" in ")
            && let Some((file, _)) = mapped.split_once('[')
            && !file.is_empty()
        {
            ev.push_extra("dll.name", file);
        }
        ("segfault", "error")
    } else if msg.starts_with("unregister_netdevice: waiting for") {
        ("netdevice_stuck", "warning")
    } else {
        return false;
    };
    ev.dataset = Cow::Borrowed("kernel");
    ev.category = Some("host");
    ev.action = Some(Cow::Borrowed(action));
    ev.outcome = Outcome::Failure;
    ev.log_level = Some(Cow::Borrowed(level));
    true
}

/// "1012 (heapster) total-vm:…"
fn target(ev: &mut Event, s: &str) {
    let (pid, rest) = super::token(s);
    ev.push_extra("process.target.pid", pid);
    if let Some(name) = rest
        .strip_prefix('(')
        .and_then(|r| r.split_once(')'))
        .map(|(n, _)| n)
    {
        ev.push_extra("process.target.name", name);
    }
}
