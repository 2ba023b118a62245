//! The audit hash chain (AUDIT.md): each row's hash covers the previous row's hash and the row's fields, so any
//! edit, deletion, insertion or reordering is found by walking the chain.
//!
//! Backend-independent: the encoding and hash of a row ([`ChainedFields`]), and the walk that checks a chain
//! ([`ChainVerifier`]) over rows any backend reads, oldest first, plus the two facts it needs besides them (the
//! newest pruning checkpoint, the highest row id ever handed out). The SQLite reading is in `sqlite_chain`.

use sha2::{Digest, Sha256};

use crate::avro::{canonical_form, fingerprint_of_canonical};

/// The `prev_hash` of the first row: 32 zero bytes, in hex.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The fields of an audit row that its hash covers, in the order they are encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainedFields<'a> {
    /// Row id.
    pub id: i64,
    /// Time in µs since the epoch.
    pub time_us: i64,
    /// Action.
    pub action: &'a str,
    /// `accepted` or `rejected`.
    pub status: &'a str,
    /// Reject code.
    pub reason: Option<&'a str>,
    /// Human detail.
    pub detail: Option<&'a str>,
    /// Key id.
    pub key_id: Option<&'a str>,
    /// Peer address.
    pub peer: Option<&'a str>,
    /// Record count.
    pub records: i64,
    /// Request size.
    pub size: i64,
    /// SHA-256 (hex) of the stored payload text.
    pub payload_sha256: Option<&'a str>,
    /// Fingerprint of the row's Avro writer schema; hashed only when there is one, so rows without (and rows
    /// written before schema version 6) hash as they always did.
    pub schema: Option<&'a str>,
    /// How many requests the row stands for; hashed only when not 1, so every older row hashes as it did.
    pub requests: i64,
    /// How the request reached the server (`curve`, `plaintext`); hashed only when there is one, so rows without
    /// (local actions, and every row written before schema version 8) hash as they did.
    pub transport: Option<&'a str>,
    /// The name of the server that wrote the row (`serve --name`); hashed only when there is one, so rows without
    /// (local actions, and every row written before schema version 10) hash as they did.
    pub server: Option<&'a str>,
}

impl ChainedFields<'_> {
    /// `SHA-256(prev_hash bytes ‖ encoding)`, in lowercase hex. The encoding is AUDIT.md's, byte for byte.
    pub fn hash(&self, prev_hash_hex: &str) -> String {
        let mut h = Sha256::new();
        h.update(prev_hash_hex.as_bytes());
        h.update(b"\n");
        h.update(self.id.to_be_bytes());
        h.update(self.time_us.to_be_bytes());
        for text in [
            Some(self.action),
            Some(self.status),
            self.reason,
            self.detail,
            self.key_id,
            self.peer,
        ] {
            encode_text(&mut h, text);
        }
        h.update(self.records.to_be_bytes());
        h.update(self.size.to_be_bytes());
        encode_text(&mut h, self.payload_sha256);
        if self.schema.is_some() {
            encode_text(&mut h, self.schema);
        }
        if self.requests != 1 {
            h.update([2u8]);
            h.update(self.requests.to_be_bytes());
        }
        if self.transport.is_some() {
            h.update([3u8]);
            encode_text(&mut h, self.transport);
        }
        if self.server.is_some() {
            h.update([4u8]);
            encode_text(&mut h, self.server);
        }
        hex::encode(h.finalize())
    }
}

/// NULL is one 0x00 byte; text is 0x01, its UTF-8 length as 4 bytes big-endian, then the bytes.
fn encode_text(h: &mut Sha256, text: Option<&str>) {
    match text {
        None => h.update([0u8]),
        Some(s) => {
            h.update([1u8]);
            h.update(u32::try_from(s.len()).unwrap_or(u32::MAX).to_be_bytes());
            h.update(s.as_bytes());
        }
    }
}

/// SHA-256 (hex) of a stored payload's text.
pub fn payload_sha256(json: &str) -> String {
    hex::encode(Sha256::digest(json.as_bytes()))
}

/// Where and how the chain is broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    /// The row's fields (or its payload) no longer give its stored hash: it was edited.
    #[error("row #{id} was altered: {what}")]
    Altered {
        /// The row.
        id: i64,
        /// What no longer matches.
        what: String,
    },
    /// The row does not follow the row before it: rows were deleted, inserted or reordered there.
    #[error("row #{id} does not follow {after}: rows were deleted, inserted or reordered there")]
    Link {
        /// The first row after the break.
        id: i64,
        /// What it should follow (`row #N`, `the start`, or `the pruning checkpoint at #N`).
        after: String,
    },
    /// The newest rows are gone: the store's id counter is past the newest row.
    #[error("rows after #{newest} were deleted (ids were handed out up to #{issued})")]
    Truncated {
        /// The newest remaining row.
        newest: i64,
        /// The highest id the store ever handed out.
        issued: i64,
    },
    /// The recorded head is not part of today's chain.
    #[error("the recorded head {row}:{hash} is not in the chain{}", found.as_ref().map(|h| format!(" (row #{row} now hashes to {h})")).unwrap_or_else(|| format!(" (row #{row} is gone)")))]
    HeadMismatch {
        /// The recorded row id.
        row: i64,
        /// The recorded hash.
        hash: String,
        /// What that row hashes to now, if it still exists.
        found: Option<String>,
    },
    /// A schema's stored text or canonical form no longer gives its fingerprint, which the rows' hashes cover.
    #[error("schema {fingerprint} was altered: {what}")]
    SchemaAltered {
        /// The fingerprint the rows name.
        fingerprint: String,
        /// What no longer matches.
        what: String,
    },
    /// A row's id is not greater than the one before it (or the checkpoint's): ids only grow along the chain, so
    /// the rows were duplicated or read out of order.
    #[error(
        "row #{id} comes after #{after}: ids must grow along the chain (a duplicated or reordered row)"
    )]
    OutOfOrder {
        /// The row out of place.
        id: i64,
        /// The id of the row (or checkpoint) before it.
        after: i64,
    },
    /// The recorded head was removed by `audit prune`, so the chain can no longer be compared with it.
    #[error(
        "the recorded head #{row} was pruned (rows up to #{through} were removed by `zavro audit prune`), so it \
         cannot be checked; verify against a head recorded after the prune"
    )]
    HeadPruned {
        /// The recorded row id.
        row: i64,
        /// The newest row pruned so far.
        through: i64,
    },
}

/// A successful verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Rows checked.
    pub rows: u64,
    /// The newest row id and hash (`None` for an empty trail).
    pub head: Option<(i64, String)>,
}

/// One stored audit row as the verifier needs it: its hashed fields, the chain links stored with it, and its
/// stored payload.
#[derive(Debug, Clone)]
pub struct StoredRow<'a> {
    /// The row's hashed fields, as stored (`payload_sha256` is the digest stored in the row).
    pub fields: ChainedFields<'a>,
    /// The stored `prev_hash` (NULL only in a damaged store).
    pub prev_hash: Option<&'a str>,
    /// The stored `hash` (NULL only in a damaged store).
    pub hash: Option<&'a str>,
    /// The row's stored payload text, if it has one.
    pub payload: Option<&'a str>,
}

/// Checks a chain fed one row at a time, oldest (lowest id) first: each row must link to the one before (or to
/// the checkpoint, or to [`GENESIS`]), its payload must give its `payload_sha256`, and its fields its hash;
/// at the end, no id may have been handed out past the newest row, and a recorded head must still be in the
/// chain.
///
/// A backend reads the checkpoint, every row and the id counter from one consistent snapshot (a writer may be
/// appending meanwhile), and checks each stored schema with [`check_schema`] first.
#[derive(Debug)]
pub struct ChainVerifier {
    /// The newest pruning checkpoint: (last pruned row id, its hash).
    checkpoint: Option<(i64, String)>,
    /// The recorded head to look for: (row id, hash).
    against: Option<(i64, String)>,
    /// The hash the next row must follow.
    prev: String,
    /// What the next row must follow, for a message.
    after: String,
    /// The id the next row's must exceed: the previous row's, the checkpoint's, or 0.
    last_id: i64,
    /// Rows checked so far.
    checked: u64,
    /// The newest row checked, and its hash.
    head: Option<(i64, String)>,
    /// What the `against` row hashes to, once it was seen.
    against_found: Option<String>,
}

impl ChainVerifier {
    /// Starts a walk from the newest pruning `checkpoint` (last pruned row id, its hash), or from [`GENESIS`]
    /// when nothing was ever pruned; with `against` (row id, hash), the walk also looks for that recorded head.
    pub fn new(checkpoint: Option<(i64, String)>, against: Option<(i64, &str)>) -> ChainVerifier {
        let last_id = checkpoint.as_ref().map_or(0, |(row, _)| *row);
        let (prev, after) = match &checkpoint {
            Some((row, hash)) => (hash.clone(), format!("the pruning checkpoint at #{row}")),
            None => (GENESIS.to_owned(), "the start".to_owned()),
        };
        ChainVerifier {
            checkpoint,
            against: against.map(|(row, hash)| (row, hash.to_owned())),
            prev,
            after,
            last_id,
            checked: 0,
            head: None,
            against_found: None,
        }
    }

    /// Checks the next row (by id); the first break found is returned, and the walk should stop there. The
    /// order is checked here too, not left to the backend's `ORDER BY`.
    pub fn row(&mut self, row: &StoredRow) -> Result<(), ChainBreak> {
        let fields = &row.fields;
        let id = fields.id;
        if id <= self.last_id {
            return Err(ChainBreak::OutOfOrder {
                id,
                after: self.last_id,
            });
        }
        if row.prev_hash != Some(self.prev.as_str()) {
            return Err(ChainBreak::Link {
                id,
                after: self.after.clone(),
            });
        }
        let payload_digest = row.payload.map(payload_sha256);
        if payload_digest.as_deref() != fields.payload_sha256 {
            let what = match row.payload {
                Some(_) => "its stored payload was changed or added",
                None => "its stored payload was deleted",
            };
            return Err(ChainBreak::Altered {
                id,
                what: what.into(),
            });
        }
        let hash = fields.hash(&self.prev);
        if row.hash != Some(hash.as_str()) {
            return Err(ChainBreak::Altered {
                id,
                what: "its fields no longer match its hash".into(),
            });
        }
        if self.against.as_ref().is_some_and(|(row, _)| *row == id) {
            self.against_found = Some(hash.clone());
        }
        self.checked += 1;
        self.last_id = id;
        self.after = format!("row #{id}");
        self.head = Some((id, hash.clone()));
        self.prev = hash;
        Ok(())
    }

    /// Ends the walk after the newest row: `issued` is the highest row id the store ever handed out (0 when
    /// none), which finds the newest rows deleted; then the recorded head is looked for.
    pub fn finish(self, issued: i64) -> Result<Verified, ChainBreak> {
        let newest = self
            .head
            .as_ref()
            .map(|(id, _)| *id)
            .or(self.checkpoint.as_ref().map(|(row, _)| *row))
            .unwrap_or(0);
        if issued > newest {
            return Err(ChainBreak::Truncated { newest, issued });
        }
        if let Some((row, hash)) = self.against {
            let in_checkpoint = self
                .checkpoint
                .as_ref()
                .is_some_and(|(r, h)| *r == row && *h == hash);
            if let Some((through, _)) = self.checkpoint.as_ref().filter(|(r, _)| row < *r) {
                return Err(ChainBreak::HeadPruned {
                    row,
                    through: *through,
                });
            }
            if self.against_found.as_deref() != Some(hash.as_str()) && !in_checkpoint {
                return Err(ChainBreak::HeadMismatch {
                    row,
                    hash,
                    found: self.against_found,
                });
            }
        }
        Ok(Verified {
            rows: self.checked,
            head: self.head,
        })
    }
}

/// Checks that a stored schema's text still has its canonical form, and that form its fingerprint: the rows'
/// hashes cover only the fingerprint.
pub fn check_schema(fingerprint: &str, canonical: &str, text: &str) -> Result<(), ChainBreak> {
    let altered = |what: &str| {
        Err(ChainBreak::SchemaAltered {
            fingerprint: fingerprint.to_owned(),
            what: what.into(),
        })
    };
    if fingerprint_of_canonical(canonical) != fingerprint {
        return altered("its canonical form does not give its fingerprint");
    }
    match apache_avro::Schema::parse_str(text) {
        Ok(schema) if canonical_form(&schema) == canonical => Ok(()),
        _ => altered("its text does not give its canonical form"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row as a backend stores it: the fields, the links sealed onto them, the payload.
    struct Sealed<'a> {
        fields: ChainedFields<'a>,
        prev: String,
        hash: String,
        payload: Option<&'a str>,
    }

    /// An accepted `send` row `id` with no payload.
    fn send(id: i64) -> ChainedFields<'static> {
        ChainedFields {
            id,
            time_us: id * 10,
            action: "send",
            status: "accepted",
            reason: None,
            detail: None,
            key_id: Some("ZK1"),
            peer: Some("127.0.0.1"),
            records: 1,
            size: 10,
            payload_sha256: None,
            schema: None,
            requests: 1,
            transport: Some("curve"),
            server: Some("alpha"),
        }
    }

    /// Chains `rows` (fields and payload) onto `start`, as a writer seals them.
    fn seal<'a>(rows: Vec<(ChainedFields<'a>, Option<&'a str>)>, start: &str) -> Vec<Sealed<'a>> {
        let mut prev = start.to_owned();
        rows.into_iter()
            .map(|(fields, payload)| {
                let hash = fields.hash(&prev);
                Sealed {
                    fields,
                    prev: std::mem::replace(&mut prev, hash.clone()),
                    hash,
                    payload,
                }
            })
            .collect()
    }

    /// Feeds `rows` to a verifier, stopping at the first break, as a backend does.
    fn walk(
        rows: &[Sealed],
        checkpoint: Option<(i64, String)>,
        against: Option<(i64, &str)>,
        issued: i64,
    ) -> Result<Verified, ChainBreak> {
        let mut verifier = ChainVerifier::new(checkpoint, against);
        for row in rows {
            verifier.row(&StoredRow {
                fields: row.fields.clone(),
                prev_hash: Some(&row.prev),
                hash: Some(&row.hash),
                payload: row.payload,
            })?;
        }
        verifier.finish(issued)
    }

    /// Rows 1 to 5, row 2 with a payload.
    fn five<'a>(digest: &'a str) -> Vec<Sealed<'a>> {
        let rows = (1..=5)
            .map(|id| match id {
                2 => (
                    ChainedFields {
                        payload_sha256: Some(digest),
                        ..send(2)
                    },
                    Some("[1]"),
                ),
                _ => (send(id), None),
            })
            .collect();
        seal(rows, GENESIS)
    }

    #[test]
    fn an_intact_chain_verifies_with_its_head_and_a_recorded_head() {
        let digest = payload_sha256("[1]");
        let rows = five(&digest);
        let verified = walk(&rows, None, None, 5).unwrap();
        assert_eq!(verified.rows, 5);
        assert_eq!(verified.head, Some((5, rows[4].hash.clone())));
        assert!(walk(&rows, None, Some((3, &rows[2].hash)), 5).is_ok());
        assert!(walk(&[], None, None, 0).unwrap().head.is_none());
    }

    #[test]
    fn an_edited_field_or_payload_is_caught_at_its_row() {
        let digest = payload_sha256("[1]");
        let mut rows = five(&digest);
        rows[2].fields.records = 99;
        assert!(matches!(
            walk(&rows, None, None, 5),
            Err(ChainBreak::Altered { id: 3, .. })
        ));

        let mut rows = five(&digest);
        rows[1].payload = Some("[666]");
        assert!(matches!(
            walk(&rows, None, None, 5),
            Err(ChainBreak::Altered { id: 2, ref what }) if what.contains("changed")
        ));
        rows[1].payload = None;
        assert!(matches!(
            walk(&rows, None, None, 5),
            Err(ChainBreak::Altered { id: 2, ref what }) if what.contains("deleted")
        ));
    }

    #[test]
    fn deleted_reordered_and_inserted_rows_break_the_link() {
        let digest = payload_sha256("[1]");
        let mut rows = five(&digest);
        rows.remove(2);
        assert_eq!(
            walk(&rows, None, None, 5),
            Err(ChainBreak::Link {
                id: 4,
                after: "row #2".into()
            })
        );

        let mut rows = five(&digest);
        rows.swap(3, 4);
        assert_eq!(
            walk(&rows, None, None, 5),
            Err(ChainBreak::Link {
                id: 5,
                after: "row #3".into()
            })
        );

        let mut rows = five(&digest);
        rows.remove(0);
        assert_eq!(
            walk(&rows, None, None, 5),
            Err(ChainBreak::Link {
                id: 2,
                after: "the start".into()
            })
        );

        // A row forged in after row 3, sealed onto it, and the later rows moved up one id to make room: the
        // first moved row still links to row 3, not to the forgery.
        let mut rows = five(&digest);
        let forged = seal(vec![(send(4), None)], &rows[2].hash).remove(0);
        for row in &mut rows[3..] {
            row.fields.id += 1;
        }
        rows.insert(3, forged);
        assert_eq!(
            walk(&rows, None, None, 6),
            Err(ChainBreak::Link {
                id: 5,
                after: "row #4".into()
            })
        );
    }

    #[test]
    fn a_row_whose_id_does_not_grow_is_refused_even_when_it_links() {
        // Rows sealed in this order link and hash correctly, but their ids do not grow: a backend reading in
        // another order than by id, or a forger reusing ids, must not pass.
        let rows = seal(
            vec![(send(1), None), (send(3), None), (send(2), None)],
            GENESIS,
        );
        assert_eq!(
            walk(&rows, None, None, 3),
            Err(ChainBreak::OutOfOrder { id: 2, after: 3 })
        );
        let rows = seal(vec![(send(1), None), (send(1), None)], GENESIS);
        assert_eq!(
            walk(&rows, None, None, 1),
            Err(ChainBreak::OutOfOrder { id: 1, after: 1 })
        );
        // After a checkpoint at #4, a row #4 (or lower) sealed onto it is refused too.
        let rows = seal(vec![(send(4), None)], "c".repeat(64).as_str());
        assert_eq!(
            walk(&rows, Some((4, "c".repeat(64))), None, 4),
            Err(ChainBreak::OutOfOrder { id: 4, after: 4 })
        );
        let rows = seal(vec![(send(5), None)], "c".repeat(64).as_str());
        assert!(walk(&rows, Some((4, "c".repeat(64))), None, 5).is_ok());
    }

    #[test]
    fn the_newest_rows_deleted_are_caught_by_the_id_counter() {
        let digest = payload_sha256("[1]");
        let mut rows = five(&digest);
        rows.pop();
        assert_eq!(
            walk(&rows, None, None, 5),
            Err(ChainBreak::Truncated {
                newest: 4,
                issued: 5
            })
        );
        assert!(walk(&rows, None, None, 4).is_ok());
    }

    #[test]
    fn a_recorded_head_that_changed_or_is_gone_is_a_mismatch() {
        let digest = payload_sha256("[1]");
        let rows = five(&digest);
        let wrong = walk(&rows, None, Some((3, &rows[4].hash)), 5).unwrap_err();
        assert_eq!(
            wrong,
            ChainBreak::HeadMismatch {
                row: 3,
                hash: rows[4].hash.clone(),
                found: Some(rows[2].hash.clone())
            }
        );
        assert!(matches!(
            walk(&rows, None, Some((9, &rows[4].hash)), 5),
            Err(ChainBreak::HeadMismatch {
                row: 9,
                found: None,
                ..
            })
        ));
    }

    #[test]
    fn after_a_prune_the_walk_starts_at_the_checkpoint() {
        let digest = payload_sha256("[1]");
        let all = five(&digest);
        let checkpoint = Some((2, all[1].hash.clone()));
        let (pruned, kept) = all.split_at(2);
        let verified = walk(kept, checkpoint.clone(), None, 5).unwrap();
        assert_eq!(verified.rows, 3);
        assert!(
            walk(kept, checkpoint.clone(), Some((2, &pruned[1].hash)), 5).is_ok(),
            "a head equal to the checkpoint"
        );
        assert_eq!(
            walk(kept, checkpoint.clone(), Some((1, &pruned[0].hash)), 5),
            Err(ChainBreak::HeadPruned { row: 1, through: 2 })
        );
        assert_eq!(
            walk(&kept[1..], checkpoint.clone(), None, 5),
            Err(ChainBreak::Link {
                id: 4,
                after: "the pruning checkpoint at #2".into()
            })
        );
        // Everything pruned: the checkpoint is the newest row the counter may have reached.
        assert!(walk(&[], Some((5, all[4].hash.clone())), None, 5).is_ok());
        assert!(matches!(
            walk(&[], Some((5, all[4].hash.clone())), None, 6),
            Err(ChainBreak::Truncated {
                newest: 5,
                issued: 6
            })
        ));
        assert!(matches!(
            walk(kept, None, None, 5),
            Err(ChainBreak::Link { id: 3, .. })
        ));
    }

    #[test]
    fn a_schema_whose_text_or_canonical_form_changed_is_caught() {
        let canonical = r#""long""#;
        let fingerprint = fingerprint_of_canonical(canonical);
        assert!(check_schema(&fingerprint, canonical, r#"{"type": "long", "doc": "d"}"#).is_ok());
        for (canonical, text) in [
            (r#""int""#, r#""int""#),
            (canonical, r#""int""#),
            (canonical, "not json"),
        ] {
            assert!(
                matches!(
                    check_schema(&fingerprint, canonical, text),
                    Err(ChainBreak::SchemaAltered { .. })
                ),
                "{canonical} {text}"
            );
        }
    }

    #[test]
    fn the_encoding_is_stable() {
        // Pinned so an accidental change to the documented encoding (AUDIT.md) fails loudly.
        let fields = ChainedFields {
            id: 1,
            time_us: 1_764_301_635_000_000,
            action: "key_add",
            status: "accepted",
            reason: None,
            detail: None,
            key_id: Some("ZK3F9A0C17B2E45D88"),
            peer: Some("local"),
            records: 0,
            size: 0,
            payload_sha256: None,
            schema: None,
            requests: 1,
            transport: None,
            server: None,
        };
        let documented = |label: &str| {
            include_str!("../../AUDIT.md")
                .lines()
                .find_map(|l| l.strip_prefix(label))
                .unwrap_or_else(|| panic!("AUDIT.md has {label:?}"))
                .trim()
        };
        let first = fields.hash(GENESIS);
        assert_eq!(first, documented("example hash: "));
        let with_schema = ChainedFields {
            id: 2,
            time_us: 1_764_301_636_000_000,
            action: "send",
            peer: Some("127.0.0.1"),
            records: 1,
            size: 612,
            payload_sha256: Some(&payload_sha256(r#"[{"n":1}]"#)),
            schema: Some(&fingerprint_of_canonical(r#""int""#)),
            ..fields
        };
        let second = with_schema.hash(&first);
        assert_eq!(second, documented("example hash with a schema: "));
        let summary = ChainedFields {
            id: 3,
            time_us: 1_764_301_646_000_000,
            status: "rejected",
            reason: Some("malformed"),
            detail: Some(
                "41 more malformed refusals from this peer between 2025-11-28T03:47:17Z and \
                 2025-11-28T03:47:26Z; the first of the window is #1",
            ),
            key_id: None,
            peer: Some("192.0.2.7"),
            records: 0,
            size: 2911,
            payload_sha256: None,
            schema: None,
            requests: 41,
            ..with_schema
        };
        let third = summary.hash(&second);
        assert_eq!(third, documented("example hash of a summary: "));
        let over_curve = ChainedFields {
            id: 4,
            time_us: 1_764_301_647_000_000,
            status: "accepted",
            reason: None,
            detail: None,
            key_id: Some("ZK3F9A0C17B2E45D88"),
            peer: Some("127.0.0.1"),
            records: 1,
            size: 612,
            requests: 1,
            transport: Some("curve"),
            ..with_schema
        };
        let fourth = over_curve.hash(&third);
        assert_eq!(fourth, documented("example hash with a transport: "));
        let named = ChainedFields {
            id: 5,
            time_us: 1_764_301_648_000_000,
            server: Some("alpha"),
            ..over_curve
        };
        assert_eq!(
            named.hash(&fourth),
            documented("example hash with a server: ")
        );
    }
}
