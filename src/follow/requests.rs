//! Lines of followed files as records, cut into requests as `send` cuts stdin, each request handed out with the
//! checkpoint just after its last line: saved together (one spool append), they cannot disagree after a crash.

use std::{collections::VecDeque, path::PathBuf, time::Instant};

use serde_json::Value;

use crate::{
    avro::AvroError,
    batch::{Batch, Batcher},
};

use super::{Checkpoint, Event};

/// A request's records and where to resume once it is saved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowedBatch {
    /// The records.
    pub batch: Batch,
    /// The checkpoint after the last line in `batch` (and after any line skipped before the next one).
    pub checkpoint: Checkpoint,
}

/// A line that is not a record, skipped so that following goes on: stopping would stop at it again after
/// every restart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: the line ending at byte {offset} is not a record ({reason}); skipped", path.display())]
pub struct Refused {
    /// The followed path.
    pub path: PathBuf,
    /// The offset after the line.
    pub offset: u64,
    /// Why: not JSON, or it does not fit the schema.
    pub reason: String,
}

/// Cuts followed lines into requests and tracks the checkpoint of each.
#[derive(Debug)]
pub struct Requests {
    batcher: Batcher,
    paths: Vec<PathBuf>,
    /// The checkpoint after the last request handed out, moved past what came after it and no record holds.
    handed_out: Checkpoint,
    /// Events since the last request handed out, each with the number of records pushed when it came. Lines'
    /// texts are dropped: only their positions are kept.
    since: VecDeque<(u64, Event)>,
    /// Records pushed to the batcher.
    pushed: u64,
    /// Records in the requests handed out.
    taken: u64,
}

impl Requests {
    /// Cuts with `batcher`; `start` is the checkpoint the follower started from, `paths` the ones it follows.
    pub fn new(batcher: Batcher, paths: Vec<PathBuf>, start: Checkpoint) -> Self {
        Requests {
            batcher,
            paths,
            handed_out: start,
            since: VecDeque::new(),
            pushed: 0,
            taken: 0,
        }
    }

    /// Takes the follower's next event at `now`: a line becomes a record (a blank one is skipped); a line that
    /// is not a record is skipped and returned, to be reported. Fails only when encoding fails for a reason
    /// other than the record (then the caller stops).
    pub fn push(&mut self, event: Event, now: Instant) -> Result<Option<Refused>, AvroError> {
        let Event::Line(line) = event else {
            self.remember(event);
            return Ok(None);
        };
        let position = line.position;
        let refused = |reason: String| Refused {
            path: self.paths.get(position.path).cloned().unwrap_or_default(),
            offset: position.offset,
            reason,
        };
        let outcome = if line.text.iter().all(u8::is_ascii_whitespace) {
            None
        } else {
            match serde_json::from_slice::<Value>(&line.text) {
                Err(e) => Some(refused(format!("not JSON: {e}"))),
                Ok(value) => {
                    let number = usize::try_from(self.pushed + 1).unwrap_or(usize::MAX);
                    match self.batcher.push(&value, number, now) {
                        Ok(()) => {
                            self.pushed += 1;
                            None
                        }
                        Err(
                            e @ (AvroError::DoesNotFit { .. }
                            | AvroError::UnrepresentableNumber { .. }),
                        ) => Some(refused(e.to_string())),
                        Err(e) => return Err(e),
                    }
                }
            }
        };
        self.remember(Event::Skip(position));
        Ok(outcome)
    }

    /// Keeps `event` for the checkpoint of the request that holds the records before it.
    fn remember(&mut self, event: Event) {
        if matches!(event, Event::Notice(_)) {
            return;
        }
        if self.pushed == self.taken {
            // No record waits: the next request's checkpoint includes it whatever comes.
            self.handed_out.apply(&event);
        } else {
            self.since.push_back((self.pushed, event));
        }
    }

    /// Hands out `batch` with its checkpoint.
    fn hand_out(&mut self, batch: Batch) -> FollowedBatch {
        self.taken += batch.records;
        while let Some((pushed, _)) = self.since.front()
            && *pushed <= self.taken
        {
            if let Some((_, event)) = self.since.pop_front() {
                self.handed_out.apply(&event);
            }
        }
        FollowedBatch {
            batch,
            checkpoint: self.handed_out.clone(),
        }
    }

    /// A request that reached a bound, if any (ask after each push).
    pub fn take_full(&mut self) -> Option<FollowedBatch> {
        let batch = self.batcher.take_full()?;
        Some(self.hand_out(batch))
    }

    /// A request cut, or the open one once its oldest record has lingered (ask when nothing more is at hand).
    pub fn take_due(&mut self, now: Instant) -> Result<Option<FollowedBatch>, AvroError> {
        Ok(self
            .batcher
            .take_due(now)?
            .map(|batch| self.hand_out(batch)))
    }

    /// Every record pushed, one request at a time (at the end: ask until `None`).
    pub fn take_rest(&mut self) -> Result<Option<FollowedBatch>, AvroError> {
        Ok(self.batcher.take_rest()?.map(|batch| self.hand_out(batch)))
    }

    /// When the open request will have lingered long enough; `None` when no record waits.
    pub fn deadline(&self) -> Option<Instant> {
        self.batcher.deadline()
    }

    /// The checkpoint after the last request handed out and what followed it that no record holds: where a
    /// restart resumes once every request handed out is saved. It moves without a request when lines are
    /// skipped or a rotated file is given up; save it then only if it is worth an append of its own.
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.handed_out
    }

    /// Whether records wait for a request.
    pub fn is_idle(&self) -> bool {
        self.pushed == self.taken
    }
}

#[cfg(test)]
mod tests {
    use std::{fs::OpenOptions, io::Write, path::Path, time::Duration};

    use apache_avro::Codec;

    use super::*;
    use crate::{
        avro::{BatchEncoder, Decoder},
        batch::{Limits, MAX_LINGER},
        follow::{Follower, Settings},
    };

    fn append(path: &Path, text: &str) {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        file.write_all(text.as_bytes()).unwrap();
    }

    /// The `n` of each record of a request, through the server's decoder.
    fn numbers(batch: &Batch) -> Vec<u64> {
        let text = Decoder::new()
            .decode_request(&batch.payload)
            .records
            .unwrap();
        text.lines()
            .map(|line| {
                serde_json::from_str::<Value>(line).unwrap()["n"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    }

    /// Follows `log` from `resume` and cuts everything there is into requests of at most `per_request`
    /// records, as a sender does; the lines refused on the way.
    fn requests_of(
        log: &Path,
        resume: Option<&Checkpoint>,
        per_request: u64,
    ) -> (Vec<FollowedBatch>, Vec<Refused>) {
        let now = Instant::now();
        let (mut follower, start, _) =
            Follower::new(&[log.to_path_buf()], resume, Settings::default(), now).unwrap();
        let limits = Limits {
            records: per_request,
            bytes: 1 << 20,
            linger: MAX_LINGER,
        };
        let batcher = Batcher::new(BatchEncoder::new(Codec::Null), limits);
        let mut requests = Requests::new(batcher, follower.paths(), start);
        let (mut cut, mut refused) = (Vec::new(), Vec::new());
        for event in follower.poll(now).unwrap() {
            refused.extend(requests.push(event, now).unwrap());
            cut.extend(requests.take_full());
        }
        while let Some(batch) = requests.take_rest().unwrap() {
            cut.push(batch);
        }
        (cut, refused)
    }

    #[test]
    fn each_request_carries_the_checkpoint_after_its_last_line_and_resuming_there_sends_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        let mut text = String::new();
        for n in 1..=7 {
            text.push_str(&format!("{{\"n\":{n}}}\n"));
            if n == 2 {
                text.push_str("not json\n");
            }
            if n == 4 {
                text.push_str("   \n");
            }
        }
        append(&log, &text);
        let (all, refused) = requests_of(&log, None, 2);
        let sent: Vec<Vec<u64>> = all.iter().map(|r| numbers(&r.batch)).collect();
        assert_eq!(sent, [vec![1, 2], vec![3, 4], vec![5, 6], vec![7]]);
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert_eq!(refused[0].offset, 25, "{refused:?}");
        assert!(
            refused[0].to_string().contains("not JSON"),
            "{}",
            refused[0]
        );

        // Killed after any request was saved: resuming from its checkpoint sends exactly the ones after it.
        for (k, saved) in all.iter().enumerate() {
            let (rest, _) = requests_of(&log, Some(&saved.checkpoint), 2);
            let resent: Vec<u64> = rest.iter().flat_map(|r| numbers(&r.batch)).collect();
            let expected: Vec<u64> = sent[k + 1..].iter().flatten().copied().collect();
            assert_eq!(resent, expected, "resumed after request {k}");
        }
    }

    #[test]
    fn a_request_cut_before_the_record_that_overflowed_it_excludes_that_records_line() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        let now = Instant::now();
        append(&log, "{\"n\":1}\n{\"n\":2}\n");
        let (mut follower, start, _) =
            Follower::new(std::slice::from_ref(&log), None, Settings::default(), now).unwrap();
        // 1024 bytes per request: a third record of over 1010 bytes does not fit with the first two.
        let limits = Limits {
            records: 100,
            bytes: 1024,
            linger: Duration::from_millis(1),
        };
        let batcher = Batcher::new(BatchEncoder::new(Codec::Null), limits);
        let mut requests = Requests::new(batcher, follower.paths(), start);
        for event in follower.poll(now).unwrap() {
            requests.push(event, now).unwrap();
        }
        assert!(requests.take_full().is_none());
        append(
            &log,
            &format!("{{\"n\":3,\"pad\":\"{}\"}}\n", "x".repeat(1010)),
        );
        for event in follower.poll(now).unwrap() {
            requests.push(event, now).unwrap();
        }
        let first = requests.take_full().unwrap();
        assert_eq!(numbers(&first.batch), [1, 2]);
        assert_eq!(first.checkpoint.cursors(&log)[0].offset, 16);
        assert!(!requests.is_idle());
        let later = now + Duration::from_secs(1);
        let second = requests.take_due(later).unwrap().unwrap();
        assert_eq!(numbers(&second.batch), [3]);
        assert_eq!(
            second.checkpoint.cursors(&log)[0].offset,
            std::fs::metadata(&log).unwrap().len()
        );
        assert!(requests.is_idle());
    }
}
