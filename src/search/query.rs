//! Searching the day indexes: a query in tantivy's syntax over the ECS
//! names, an optional time range, newest events first.
//!
//! ```text
//! source.ip:203.0.113.50 AND http.response.status_code:401
//! user.name:root "failed password"          (words and phrases of the line)
//! event.dataset:nginx.access -url.path:/healthz
//! http.response.status_code:[500 TO 599]      (numbers only)
//! url.path:/wp-*   user.name:/svc-[0-9]+/      (prefix, regex of the value)
//! ```
//! Field values are matched whole and without case; words without a field
//! are looked up in the raw line (`event.original`). Terms are joined by
//! AND unless the query says OR. Days outside the range are never opened;
//! days are read newest first and the search stops once it has `limit` hits.

use std::ops::Bound;
use std::path::Path;

use serde_json::Value;
use tantivy::collector::TopDocs;
use tantivy::query::{
    AllQuery, BooleanQuery, BoostQuery, Occur, Query, QueryParser, RangeQuery, RegexQuery,
};
use tantivy::query_grammar::{UserInputAst, UserInputLeaf, UserInputLiteral};
use tantivy::schema::Value as _;
use tantivy::{Order, ReloadPolicy, TantivyDocument, Term};

use super::index::{FIELDS, Fields, NUMBERS, list_days, open_day, schema};

/// What to look for.
#[derive(Clone, Debug)]
pub struct Search {
    pub query: String,
    /// Epoch ms, inclusive.
    pub since: Option<i64>,
    /// Epoch ms, exclusive.
    pub until: Option<i64>,
    pub limit: usize,
}

/// One matching event.
#[derive(Clone, Debug)]
pub struct Hit {
    pub timestamp_ms: i64,
    /// The ECS event as stored.
    pub event: Value,
}

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("cannot read the query: {0}")]
    Query(String),
    #[error("no search index under {0} (a pipeline with a parquet sink writes one)")]
    NoIndex(String),
    #[error("search index {path}: {error}")]
    Index { path: String, error: String },
}

impl Search {
    /// Runs the search over the day indexes under `root`.
    pub fn run(&self, root: &Path) -> Result<Vec<Hit>, SearchError> {
        if !root.is_dir() {
            return Err(SearchError::NoIndex(root.display().to_string()));
        }
        let (_, fields) = schema();
        // built once, before any day is opened (so an empty range still
        // reports a bad query): every day index has the same schema
        let query = self.bounded_query(fields)?;
        let mut days = list_days(root);
        days.sort_by_key(|d| std::cmp::Reverse(d.0));
        let first_day = self.since.map(|ms| ms.div_euclid(86_400_000));
        let last_day = self.until.map(|ms| (ms - 1).div_euclid(86_400_000));
        let mut hits = Vec::new();
        for (day, path) in days {
            if first_day.is_some_and(|d| day < d) || last_day.is_some_and(|d| day > d) {
                continue;
            }
            let left = self.limit.saturating_sub(hits.len());
            if left == 0 {
                break;
            }
            let index_error = |e: tantivy::TantivyError| SearchError::Index {
                path: path.display().to_string(),
                error: e.to_string(),
            };
            let index = open_day(&path).map_err(index_error)?;
            let reader = index
                .reader_builder()
                .reload_policy(ReloadPolicy::Manual)
                .try_into()
                .map_err(index_error)?;
            let searcher = reader.searcher();
            let top =
                TopDocs::with_limit(left).order_by_fast_field::<i64>("@timestamp", Order::Desc);
            let found = searcher.search(&query, &top).map_err(index_error)?;
            for (ts, addr) in found {
                let doc: TantivyDocument = searcher.doc(addr).map_err(index_error)?;
                let event = doc
                    .get_first(fields.source)
                    .and_then(|v| v.as_str())
                    .and_then(|s| serde_json::from_str(s).ok())
                    .unwrap_or(Value::Null);
                hits.push(Hit {
                    timestamp_ms: ts.unwrap_or_default(),
                    event,
                });
            }
        }
        Ok(hits)
    }

    /// The parsed query, bounded by the time range when there is one.
    fn bounded_query(&self, f: Fields) -> Result<Box<dyn Query>, SearchError> {
        let parsed = parse(&probe(), &self.query, f)?;
        if self.since.is_none() && self.until.is_none() {
            return Ok(parsed);
        }
        let lower = self.since.map_or(Bound::Unbounded, |ms| {
            Bound::Included(Term::from_field_i64(f.timestamp, ms))
        });
        let upper = self.until.map_or(Bound::Unbounded, |ms| {
            Bound::Excluded(Term::from_field_i64(f.timestamp, ms))
        });
        Ok(Box::new(BooleanQuery::new(vec![
            (Occur::Must, parsed),
            (Occur::Must, Box::new(RangeQuery::new(lower, upper))),
        ])))
    }
}

/// An empty index with the day indexes' schema and analyzers, which is
/// all the query parser reads.
fn probe() -> tantivy::Index {
    let index = tantivy::Index::create_in_ram(schema().0);
    super::index::register_analyzers(&index);
    index
}

fn parse(index: &tantivy::Index, text: &str, f: Fields) -> Result<Box<dyn Query>, SearchError> {
    let text = text.trim();
    if text.is_empty() || text == "*" {
        return Ok(Box::new(AllQuery));
    }
    let bad = |e: &dyn std::fmt::Display| SearchError::Query(format!("{e} in `{text}`"));
    let ast = tantivy::query_grammar::parse_query(text).map_err(|_| bad(&"syntax error"))?;
    let schema = index.schema();
    let ast = qualify(ast, &|name| schema.find_field(name).is_some());
    let mut parser = QueryParser::for_index(index, vec![f.original, f.values]);
    parser.set_conjunction_by_default();
    build(ast, &parser, &schema, f).map_err(|e| bad(&e))
}

/// The query of an AST: leaves by tantivy's parser, except one-word
/// prefixes, which it does not expand.
fn build(
    ast: UserInputAst,
    parser: &QueryParser,
    schema: &tantivy::schema::Schema,
    f: Fields,
) -> Result<Box<dyn Query>, String> {
    match ast {
        UserInputAst::Clause(clauses) => {
            let mut subs = Vec::with_capacity(clauses.len() + 1);
            for (occur, sub) in clauses {
                subs.push((occur.unwrap_or(Occur::Must), build(sub, parser, schema, f)?));
            }
            // `-a -b` means everything but a and b, as the parser reads it
            if subs.iter().all(|(o, _)| *o == Occur::MustNot) {
                subs.push((Occur::Must, Box::new(AllQuery)));
            }
            Ok(Box::new(BooleanQuery::new(subs)))
        }
        UserInputAst::Boost(sub, boost) => Ok(Box::new(BoostQuery::new(
            build(*sub, parser, schema, f)?,
            boost.into_inner() as f32,
        ))),
        UserInputAst::Leaf(leaf) => match *leaf {
            UserInputLeaf::Literal(ref lit) if let Some(stem) = prefix_stem(lit) => {
                let pattern = format!("{}.*", regex::escape(&stem.to_lowercase()));
                regex_query(lit.field_name.as_deref(), &pattern, schema, f)
            }
            UserInputLeaf::Regex { field, pattern } => {
                regex_query(field.as_deref(), &pattern, schema, f)
            }
            leaf => parser
                .build_query_from_user_input_ast(UserInputAst::Leaf(Box::new(leaf)))
                .map_err(|e| e.to_string()),
        },
    }
}

/// Terms matching `pattern` whole: the raw line's words when no field is
/// named, else the field's whole (lowercased) values. Tantivy's parser
/// takes no regex on a JSON field, so the path goes into the pattern.
fn regex_query(
    field: Option<&str>,
    pattern: &str,
    schema: &tantivy::schema::Schema,
    f: Fields,
) -> Result<Box<dyn Query>, String> {
    // checked alone, so that an error shows the pattern as written
    regex::Regex::new(pattern).map_err(|e| format!("bad regex /{pattern}/: {e}"))?;
    let (field, pattern) = match field.map(|name| (name, schema.find_field(name))) {
        None => (f.original, pattern.to_owned()),
        Some((_, Some((field, "")))) => (field, pattern.to_owned()),
        Some((name, found)) => {
            let path = found.map_or(name, |(_, path)| path);
            let mut key = Term::from_field_json_path(f.values, path, true);
            key.append_type_and_str("");
            // the term keys of a JSON field start with the path and type
            let head = String::from_utf8_lossy(key.serialized_value_bytes()).into_owned();
            (f.values, format!("{}(?:{pattern})", regex::escape(&head)))
        }
    };
    Ok(Box::new(
        RegexQuery::from_pattern(&pattern, field).map_err(|e| e.to_string())?,
    ))
}

/// The stem of a one-word prefix (`url.path:/wp-*`, `invalid*`): tantivy
/// only expands the last word of a phrase, so a lone word becomes a regex.
fn prefix_stem(lit: &UserInputLiteral) -> Option<&str> {
    let stem = lit.phrase.strip_suffix('*').unwrap_or(&lit.phrase);
    let starred = lit.prefix || stem.len() < lit.phrase.len();
    (starred && !stem.is_empty() && !stem.contains(char::is_whitespace)).then_some(stem)
}

/// Puts the ECS names of sets under the `fields` JSON field
/// (the parser looks plain terms up there by itself, but not these) and
/// those of ranges under `numbers`, the JSON field with columns.
fn qualify(ast: UserInputAst, known: &dyn Fn(&str) -> bool) -> UserInputAst {
    let under = |json: &str, field: Option<String>| {
        field.map(|name| {
            if known(&name) {
                name
            } else {
                format!("{json}.{name}")
            }
        })
    };
    let under_fields = |field| under(FIELDS, field);
    match ast {
        UserInputAst::Clause(clauses) => UserInputAst::Clause(
            clauses
                .into_iter()
                .map(|(occur, sub)| (occur, qualify(sub, known)))
                .collect(),
        ),
        UserInputAst::Boost(sub, boost) => {
            UserInputAst::Boost(Box::new(qualify(*sub, known)), boost)
        }
        UserInputAst::Leaf(leaf) => UserInputAst::Leaf(Box::new(match *leaf {
            UserInputLeaf::Range {
                field,
                lower,
                upper,
            } => UserInputLeaf::Range {
                field: under(NUMBERS, field),
                lower,
                upper,
            },
            UserInputLeaf::Set { field, elements } => UserInputLeaf::Set {
                field: under_fields(field),
                elements,
            },
            other => other,
        })),
    }
}
