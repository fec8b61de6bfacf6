//! SQL text with its bound parameters (ClickHouse's `{name:Type}`), built
//! piece by piece: every value a client sent travels as a parameter, never
//! spliced into the text.

use serde::Serialize;

/// A bound parameter's value.
#[derive(Serialize, Clone, Debug)]
#[serde(untagged)]
pub enum Param {
    Str(String),
    Int(i64),
    Float(f64),
    Strs(Vec<String>),
    Ints(Vec<i64>),
}

/// SQL text and its parameters.
#[derive(Debug, Default)]
pub struct Statement {
    pub sql: String,
    pub params: Vec<(String, Param)>,
}

impl Statement {
    /// Binds `value` as ClickHouse type `ty`; returns the placeholder that reads it.
    pub fn bind(&mut self, ty: &str, value: Param) -> String {
        let name = format!("p{}", self.params.len());
        self.params.push((name.clone(), value));
        format!("{{{name}:{ty}}}")
    }

    /// The query to send on `client`.
    pub fn into_query(self, client: &clickhouse::Client) -> clickhouse::query::Query {
        let mut q = client.query(&self.sql);
        for (name, value) in &self.params {
            q = q.param(name, value);
        }
        q
    }
}
