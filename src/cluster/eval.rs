//! Clustering accuracy against Loghub ground truth (Loghub-2.0 metrics).
//!
//! - GA (grouping accuracy): share of lines whose predicted group holds
//!   exactly the lines of their true group.
//! - FGA: F1 over groups (a predicted group is right when it equals a true one).
//! - PA (parsing accuracy): share of lines whose template text equals the
//!   true template (wildcards normalized).
//! - FTA: F1 over templates that are right both as a group and as text.

use std::collections::HashMap;

/// Scores for one dataset.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Scores {
    pub ga: f64,
    pub fga: f64,
    pub pa: f64,
    pub fta: f64,
    pub lines: usize,
    pub predicted_groups: usize,
    pub true_groups: usize,
}

/// `truth[i]` and `predicted[i]` are the (group id, template text) of line i.
pub fn score(truth: &[(String, String)], predicted: &[(String, String)]) -> Scores {
    let n = truth.len().min(predicted.len());
    let mut true_groups: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut pred_groups: HashMap<&str, Vec<usize>> = HashMap::new();
    for i in 0..n {
        true_groups.entry(truth[i].0.as_str()).or_default().push(i);
        pred_groups
            .entry(predicted[i].0.as_str())
            .or_default()
            .push(i);
    }
    let mut correct_lines = 0usize;
    let mut correct_groups = 0usize;
    let mut correct_templates = 0usize;
    for members in pred_groups.values() {
        let t = truth[members[0]].0.as_str();
        if true_groups.get(t).is_some_and(|tm| tm == members) {
            correct_lines += members.len();
            correct_groups += 1;
            if normalize(&predicted[members[0]].1) == normalize(&truth[members[0]].1) {
                correct_templates += 1;
            }
        }
    }
    let pa_hits = (0..n)
        .filter(|&i| normalize(&predicted[i].1) == normalize(&truth[i].1))
        .count();
    let f1 = |hits: usize| {
        let p = hits as f64 / pred_groups.len().max(1) as f64;
        let r = hits as f64 / true_groups.len().max(1) as f64;
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    };
    Scores {
        ga: correct_lines as f64 / n.max(1) as f64,
        fga: f1(correct_groups),
        pa: pa_hits as f64 / n.max(1) as f64,
        fta: f1(correct_templates),
        lines: n,
        predicted_groups: pred_groups.len(),
        true_groups: true_groups.len(),
    }
}

/// Template text for comparison: whitespace collapsed, runs of wildcards merged.
fn normalize(t: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for tok in t.split_whitespace() {
        if tok == "<*>" && out.last() == Some(&"<*>") {
            continue;
        }
        out.push(tok);
    }
    out.join(" ")
}

/// The Loghub-2.0 benchmark's header formats for the 2k datasets.
pub const LOGHUB_FORMATS: &[(&str, &str)] = &[
    ("HDFS", "<Date> <Time> <Pid> <Level> <Component>: <Content>"),
    (
        "Hadoop",
        r"<Date> <Time> <Level> \[<Process>\] <Component>: <Content>",
    ),
    ("Spark", "<Date> <Time> <Level> <Component>: <Content>"),
    (
        "Zookeeper",
        r"<Date> <Time> - <Level>  \[<Node>:<Component>@<Id>\] - <Content>",
    ),
    (
        "BGL",
        "<Label> <Timestamp> <Date> <Node> <Time> <NodeRepeat> <Type> <Component> <Level> <Content>",
    ),
    (
        "HPC",
        "<LogId> <Node> <Component> <State> <Time> <Flag> <Content>",
    ),
    (
        "Linux",
        r"<Month> <Date> <Time> <Level> <Component>(\[<PID>\])?: <Content>",
    ),
    (
        "OpenSSH",
        r"<Date> <Day> <Time> <Component> sshd\[<Pid>\]: <Content>",
    ),
    (
        "Thunderbird",
        r"<Label> <Timestamp> <Date> <User> <Month> <Day> <Time> <Location> <Component>(\[<PID>\])?: <Content>",
    ),
    ("Apache", r"\[<Time>\] \[<Level>\] <Content>"),
    ("HealthApp", r"<Time>\|<Component>\|<Pid>\|<Content>"),
    (
        "Mac",
        r"<Month>  <Date> <Time> <User> <Component>\[<PID>\]( \(<Address>\))?: <Content>",
    ),
    ("Proxifier", r"\[<Time>\] <Program> - <Content>"),
    (
        "Android",
        r"<Date> <Time>  <Pid>  <Tid> <Level> <Component>: <Content>",
    ),
    (
        "Windows",
        r"<Date> <Time>, <Level>                  <Component>    <Content>",
    ),
    (
        "OpenStack",
        r"<Logrecord> <Date> <Time> <Pid> <Level> <Component> \[<ADDR>\] <Content>",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_and_split_groupings() {
        let t = |g: &str| (g.to_owned(), format!("tpl {g}"));
        let truth = vec![t("A"), t("A"), t("B")];
        assert_eq!(score(&truth, &truth).ga, 1.0);
        let split = vec![t("x"), t("y"), t("z")];
        let s = score(&truth, &split);
        assert!((s.ga - 1.0 / 3.0).abs() < 1e-9);
    }
}
