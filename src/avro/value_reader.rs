//! apache-avro's reader of records as values, for the decoder's value route (a writer schema resolved against a
//! reader schema, or one without a compiled plan): built once per writer schema and kept in the decoder's cache
//! beside it, where each request once resolved the schemas' names and built the reader again.

use std::{fmt, sync::Arc};

use apache_avro::{
    Schema,
    reader::datum::GenericDatumReader,
    schema::{NamesRef, ResolvedSchema},
    types::Value,
};

/// The schema records were written with, the schema they are read as (the same, or a reader schema), the
/// latter's names, and apache-avro's reader from one to the other, which borrow the schemas.
#[ouroboros::self_referencing]
pub(super) struct ValueReader {
    writer: Arc<Schema>,
    shape: Arc<Schema>,
    #[borrows(shape)]
    #[covariant]
    names: ResolvedSchema<'this>,
    #[borrows(writer, shape)]
    #[covariant]
    reader: GenericDatumReader<'this>,
}

impl ValueReader {
    /// A reader of `schema`'s records as they were written.
    pub(super) fn of(schema: Arc<Schema>) -> Result<Self, apache_avro::Error> {
        ValueReader::try_new(
            Arc::clone(&schema),
            schema,
            |shape| ResolvedSchema::try_from(shape.as_ref()),
            |writer, _| GenericDatumReader::builder(writer).build(),
        )
    }

    /// A reader of `writer`'s records in the shape of `reader` (Avro's schema resolution).
    pub(super) fn resolving(
        writer: Arc<Schema>,
        reader: Arc<Schema>,
    ) -> Result<Self, apache_avro::Error> {
        ValueReader::try_new(
            writer,
            reader,
            |shape| ResolvedSchema::try_from(shape.as_ref()),
            |writer, shape| {
                GenericDatumReader::builder(writer)
                    .reader_schema(shape)
                    .build()
            },
        )
    }

    /// Reads one record from the front of `data`, which then starts after it.
    pub(super) fn read(&self, data: &mut &[u8]) -> Result<Value, apache_avro::Error> {
        self.borrow_reader().read_value(data)
    }

    /// The schema the data was written with.
    pub(super) fn writer(&self) -> &Schema {
        self.borrow_writer()
    }

    /// The schema records come out in.
    pub(super) fn shape(&self) -> &Schema {
        self.borrow_shape()
    }

    /// The named types of [`ValueReader::shape`].
    pub(super) fn names(&self) -> &NamesRef<'_> {
        self.borrow_names().get_names()
    }
}

impl fmt::Debug for ValueReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ValueReader")
            .field("writer", self.writer())
            .field("shape", self.shape())
            .finish_non_exhaustive()
    }
}
