//! Prepared statements, kept per connection: a statement prepared once costs one round trip instead of two each
//! time it runs (the `postgres` crate otherwise prepares a text query before every execution).

use std::collections::HashMap;

use postgres::{GenericClient, Statement};

/// The statements prepared on one connection, by their SQL text. Forgotten ([`Statements::clear`]) when the
/// connection is replaced: a statement belongs to the connection that prepared it.
#[derive(Default)]
pub struct Statements {
    prepared: HashMap<&'static str, Statement>,
}

impl Statements {
    /// The statement for `sql`, prepared on `client` the first time it is asked for.
    pub fn get(
        &mut self,
        client: &mut impl GenericClient,
        sql: &'static str,
    ) -> Result<Statement, postgres::Error> {
        if let Some(statement) = self.prepared.get(sql) {
            return Ok(statement.clone());
        }
        let statement = client.prepare(sql)?;
        self.prepared.insert(sql, statement.clone());
        Ok(statement)
    }

    /// Forgets every statement, for a new connection.
    pub fn clear(&mut self) {
        self.prepared.clear();
    }
}
