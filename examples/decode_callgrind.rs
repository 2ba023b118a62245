//! Decodes one request many times with one `Decoder`, for instruction counts under callgrind:
//!
//!   cargo build --release --example decode_callgrind
//!   valgrind --tool=callgrind --callgrind-out-file=cg.out target/release/examples/decode_callgrind json 200
//!   callgrind_annotate --inclusive=yes cg.out | grep 'Decoder::decode_request'
//!
//! `json REPEATS`: a request of 1000 records of zavro's JSON schema (`zavro::bench::record`, 150 bytes each).
//! `resolved REPEATS`: a request of 10 records of a user schema, decoded by a decoder with a reader schema
//! (`serve --schema`), which takes the value route.

use apache_avro::{Schema, Writer, types::Value as Avro};
use zavro::avro::{Decoder, encode};

const WRITER: &str = r#"{"type":"record","name":"Reading","fields":[{"name":"seq","type":"long"},
    {"name":"indicator","type":"string"},{"name":"value","type":"double"}]}"#;
const READER: &str = r#"{"type":"record","name":"Reading","fields":[{"name":"seq","type":"long"},
    {"name":"value","type":"double"},{"name":"unit","type":"string","default":"kW"}]}"#;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map_or("json", String::as_str);
    let repeats: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(100);
    zavro::avro::limit_decode_allocations();
    let (mut decoder, request) = match mode {
        "json" => {
            let records: Vec<_> = (0..1000).map(|i| zavro::bench::record(i, 150)).collect();
            (Decoder::new(), encode(&records).expect("records encode"))
        }
        "resolved" => {
            let writer = Schema::parse_str(WRITER).expect("the writer schema parses");
            let mut file = Writer::new(&writer, Vec::new()).expect("a writer");
            for seq in 0..10 {
                file.append_value(Avro::Record(vec![
                    ("seq".into(), Avro::Long(seq)),
                    ("indicator".into(), Avro::String("power".into())),
                    ("value".into(), Avro::Double(5.3)),
                ]))
                .expect("a record appends");
            }
            let reader = Schema::parse_str(READER).expect("the reader schema parses");
            (
                Decoder::with_reader_schemas(vec![reader]),
                file.into_inner().expect("the file ends"),
            )
        }
        other => panic!("unknown mode {other}"),
    };
    let mut lines = 0;
    let mut bytes = 0;
    for _ in 0..repeats {
        let records = decoder
            .decode_request(&request)
            .records
            .expect("the request decodes");
        lines += records.records;
        bytes += records.text.len();
    }
    println!("{mode}: {repeats} requests, {lines} records, {bytes} bytes of text");
}
