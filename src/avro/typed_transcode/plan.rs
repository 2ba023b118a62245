//! A user's schema compiled for the visitor: what each type needs to write a JSON value, looked up by index.

use std::collections::HashMap;

use apache_avro::{
    Schema,
    schema::{InnerDecimalSchema, NamesRef, UuidSchema},
};
use serde_json::Value;

use super::{Ctx, Scratch};
use crate::avro::typed::{Unit, Zone};

/// Where a node is in a [`Plan`].
pub(super) type NodeId = usize;

/// A user's schema, compiled once into what the visitor walks: named types resolved to indexes (so recursive
/// types are loops), defaults encoded ahead, logical types reduced to what their JSON forms need.
#[derive(Debug)]
pub struct Plan {
    pub(super) nodes: Vec<Node>,
    pub(super) root: NodeId,
}

/// One schema type.
#[derive(Debug)]
pub(super) enum Node {
    /// A type no JSON value is written as here (`duration`, big-decimal, an unresolved name).
    Fail,
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    String,
    Bytes,
    Fixed(usize),
    Enum(Vec<String>),
    Array(NodeId),
    Map(NodeId),
    Record(Vec<Field>),
    Union(Vec<NodeId>),
    Uuid(UuidForm),
    Date,
    TimeMillis,
    TimeMicros,
    Timestamp(Unit, Zone),
    Decimal {
        scale: usize,
        /// The size of its `fixed`, or `None` for `bytes`.
        fixed: Option<usize>,
    },
}

/// How a `uuid` is stored.
#[derive(Debug)]
pub(super) enum UuidForm {
    String,
    Bytes,
    Fixed(usize),
}

/// A record field.
#[derive(Debug)]
pub(super) struct Field {
    pub(super) name: String,
    pub(super) node: NodeId,
    /// The default's bytes, or `None` when the field has no default (or one that does not encode).
    pub(super) default: Option<Vec<u8>>,
}

impl Plan {
    /// Compiles `schema`, whose named types are `names` (as [`crate::avro::typed::to_avro`] resolves them).
    pub fn compile(schema: &Schema, names: &NamesRef) -> Plan {
        let mut compiler = Compiler {
            nodes: Vec::new(),
            seen: HashMap::new(),
            names,
            defaults: Vec::new(),
        };
        let root = compiler.node(schema);
        let defaults = std::mem::take(&mut compiler.defaults);
        let mut plan = Plan {
            nodes: compiler.nodes,
            root,
        };
        for (record, field, default) in defaults {
            let Node::Record(fields) = &plan.nodes[record] else {
                continue;
            };
            let bytes = plan.encode_tree(fields[field].node, &default);
            if let Node::Record(fields) = &mut plan.nodes[record] {
                fields[field].default = bytes;
            }
        }
        plan
    }

    /// The bytes of `value` at `node`, or `None` if this route does not write it.
    fn encode_tree(&self, node: NodeId, value: &Value) -> Option<Vec<u8>> {
        let mut scratch = Scratch::default();
        let mut ctx = Ctx {
            plan: self,
            out: Vec::new(),
            st: &mut scratch,
            failed: false,
        };
        ctx.write_tree(node, value).then_some(ctx.out)
    }
}

/// Builds a [`Plan`]: each schema once, by its address, so a named type referred to again is the same node.
struct Compiler<'s, 'n> {
    nodes: Vec<Node>,
    seen: HashMap<*const Schema, NodeId>,
    names: &'n NamesRef<'s>,
    /// Defaults to encode once every node is in: (record node, field index, default).
    defaults: Vec<(NodeId, usize, Value)>,
}

impl<'s> Compiler<'s, '_> {
    fn node(&mut self, schema: &'s Schema) -> NodeId {
        let schema = match schema {
            Schema::Ref { name } => match self.names.get(name) {
                Some(named) => *named,
                None => {
                    self.nodes.push(Node::Fail);
                    return self.nodes.len() - 1;
                }
            },
            other => other,
        };
        if let Some(&id) = self.seen.get(&(schema as *const Schema)) {
            return id;
        }
        let id = self.nodes.len();
        self.nodes.push(Node::Fail);
        self.seen.insert(schema as *const Schema, id);
        let node = match schema {
            Schema::Null => Node::Null,
            Schema::Boolean => Node::Boolean,
            Schema::Int => Node::Int,
            Schema::Long => Node::Long,
            Schema::Float => Node::Float,
            Schema::Double => Node::Double,
            Schema::String => Node::String,
            Schema::Bytes => Node::Bytes,
            Schema::Fixed(fixed) => Node::Fixed(fixed.size),
            Schema::Enum(e) => Node::Enum(e.symbols.clone()),
            Schema::Array(array) => Node::Array(self.node(&array.items)),
            Schema::Map(map) => Node::Map(self.node(&map.types)),
            Schema::Record(record) => {
                let mut fields = Vec::with_capacity(record.fields.len());
                for (i, field) in record.fields.iter().enumerate() {
                    if let Some(default) = &field.default {
                        self.defaults.push((id, i, default.clone()));
                    }
                    fields.push(Field {
                        name: field.name.clone(),
                        node: self.node(&field.schema),
                        default: None,
                    });
                }
                Node::Record(fields)
            }
            Schema::Union(union) => {
                Node::Union(union.variants().iter().map(|v| self.node(v)).collect())
            }
            Schema::Uuid(UuidSchema::String) => Node::Uuid(UuidForm::String),
            Schema::Uuid(UuidSchema::Bytes) => Node::Uuid(UuidForm::Bytes),
            Schema::Uuid(UuidSchema::Fixed(fixed)) => Node::Uuid(UuidForm::Fixed(fixed.size)),
            Schema::Date => Node::Date,
            Schema::TimeMillis => Node::TimeMillis,
            Schema::TimeMicros => Node::TimeMicros,
            Schema::TimestampMillis => Node::Timestamp(Unit::Millis, Zone::Utc),
            Schema::TimestampMicros => Node::Timestamp(Unit::Micros, Zone::Utc),
            Schema::TimestampNanos => Node::Timestamp(Unit::Nanos, Zone::Utc),
            Schema::LocalTimestampMillis => Node::Timestamp(Unit::Millis, Zone::Local),
            Schema::LocalTimestampMicros => Node::Timestamp(Unit::Micros, Zone::Local),
            Schema::LocalTimestampNanos => Node::Timestamp(Unit::Nanos, Zone::Local),
            Schema::Decimal(decimal) => Node::Decimal {
                scale: decimal.scale,
                fixed: match &decimal.inner {
                    InnerDecimalSchema::Fixed(fixed) => Some(fixed.size),
                    InnerDecimalSchema::Bytes => None,
                },
            },
            // What typed::to_avro refuses whatever the JSON (and a name resolved to a name, which parsing
            // does not produce).
            Schema::BigDecimal | Schema::Duration(_) | Schema::Ref { .. } => Node::Fail,
        };
        self.nodes[id] = node;
        id
    }
}
