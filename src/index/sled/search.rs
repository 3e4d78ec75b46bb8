//! Searching records by words of their key. The keys are also kept in
//! memory (read on the first search with one scan, then kept up to date by
//! every write that adds or removes a key), and for searching laid out as
//! one text of lower-cased `component/tag/arch` lines, in key order, in
//! which `memchr::memmem` finds a word: a search of 100,000 records takes
//! about a millisecond and reads no record it does not return.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use super::{decode, key_bytes, show, Counts, Result, SledIndex};
use crate::model::{ComponentKey, Record};

/// The keys of the `components` tree, once a search has asked for them.
#[derive(Default)]
pub(super) struct Keys(RwLock<State>);

#[derive(Default)]
struct State {
    /// Key bytes `component\0tag\0arch`; `None` until first read.
    keys: Option<BTreeSet<Vec<u8>>>,
    /// Laid out for searching; `None` after a write until the next search.
    text: Option<Arc<Text>>,
}

/// Every key as a line of one text.
struct Text {
    /// `component/tag/arch\n` per key, lower case, in key order.
    text: Vec<u8>,
    /// Where each line starts.
    starts: Vec<usize>,
    keys: Vec<Vec<u8>>,
    /// The ordinal of each line's component (0, 0, 1, 2, 2, ...).
    component: Vec<u32>,
}

fn component_of(key: &[u8]) -> &[u8] {
    key.split(|b| *b == 0).next().unwrap_or_default()
}

impl Text {
    fn new(keys: &BTreeSet<Vec<u8>>) -> Text {
        let mut t = Text {
            text: Vec::with_capacity(keys.len() * 24),
            starts: Vec::with_capacity(keys.len()),
            keys: Vec::with_capacity(keys.len()),
            component: Vec::with_capacity(keys.len()),
        };
        let mut ordinal = 0u32;
        for k in keys {
            if let Some(prev) = t.keys.last() {
                if component_of(prev) != component_of(k) {
                    ordinal += 1;
                }
            }
            t.starts.push(t.text.len());
            t.text.extend(k.iter().map(|b| match b {
                0 => b'/',
                b'\n' => b' ',
                b => b.to_ascii_lowercase(),
            }));
            t.text.push(b'\n');
            t.keys.push(k.clone());
            t.component.push(ordinal);
        }
        t
    }

    fn line(&self, i: usize) -> &[u8] {
        let end = self.starts.get(i + 1).copied().unwrap_or(self.text.len());
        &self.text[self.starts[i]..end]
    }

    /// The lines (in order) of keys in `[from, to)` that contain every
    /// word; `from`/`to` are line numbers (the prefix's range).
    fn matching<'a>(
        &'a self,
        words: &'a [String],
        from: usize,
        to: usize,
    ) -> Box<dyn Iterator<Item = usize> + 'a> {
        // the longest word finds the fewest lines; the others are checked on them
        let Some(first) = words.iter().max_by_key(|w| w.len()) else {
            return Box::new(from..to);
        };
        let (lo, hi) = (
            self.starts.get(from).copied().unwrap_or(self.text.len()),
            self.starts.get(to).copied().unwrap_or(self.text.len()),
        );
        let mut last = None;
        Box::new(
            memchr::memmem::find_iter(&self.text[lo..hi], first.as_bytes())
                .map(move |at| self.starts.partition_point(|s| *s <= lo + at) - 1)
                .filter(move |line| {
                    let new = last != Some(*line);
                    last = Some(*line);
                    new
                })
                .filter(move |line| {
                    let l = self.line(*line);
                    words
                        .iter()
                        .all(|w| memchr::memmem::find(l, w.as_bytes()).is_some())
                }),
        )
    }

    /// The lines whose key starts with `prefix`.
    fn range(&self, prefix: &[u8]) -> (usize, usize) {
        let from = self.keys.partition_point(|k| k.as_slice() < prefix);
        let to = from + self.keys[from..].partition_point(|k| k.starts_with(prefix));
        (from, to)
    }
}

/// The words as the text has them (names are ASCII).
fn lower(words: &[String]) -> Vec<String> {
    words.iter().map(|w| w.to_ascii_lowercase()).collect()
}

impl Keys {
    fn state(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }

    /// A key was written to the tree (call after the write).
    pub(super) fn added(&self, key: &[u8]) {
        let mut s = self.state();
        if let Some(keys) = s.keys.as_mut() {
            if keys.insert(key.to_vec()) {
                s.text = None;
            }
        }
    }

    /// A key was removed from the tree (call after the removal).
    pub(super) fn removed(&self, key: &[u8]) {
        let mut s = self.state();
        if let Some(keys) = s.keys.as_mut() {
            if keys.remove(key) {
                s.text = None;
            }
        }
    }
}

impl SledIndex {
    /// The keys laid out for searching, read from the tree the first time.
    /// Writers update them under the same lock after writing the tree, so a
    /// key written during the scan is added once the scan is done.
    fn key_text(&self) -> Result<Arc<Text>> {
        let mut s = self.keys.state();
        if s.keys.is_none() {
            let mut keys = BTreeSet::new();
            for k in self.components.iter().keys() {
                keys.insert(k?.to_vec());
            }
            s.keys = Some(keys);
        }
        if s.text.is_none() {
            s.text = s.keys.as_ref().map(|k| Arc::new(Text::new(k)));
        }
        Ok(s.text
            .clone()
            .unwrap_or_else(|| Arc::new(Text::new(&BTreeSet::new()))))
    }

    pub(super) fn search_records(
        &self,
        prefix: &str,
        words: &[String],
        after: Option<&ComponentKey>,
        limit: usize,
    ) -> Result<Vec<Record>> {
        let words = lower(words);
        let words = &words[..];
        let t = self.key_text()?;
        let (mut from, to) = t.range(prefix.as_bytes());
        if let Some(a) = after.map(key_bytes) {
            from = from.max(t.keys.partition_point(|k| *k <= a));
        }
        let found: Vec<usize> = t.matching(words, from, to.max(from)).take(limit).collect();
        let mut out = Vec::with_capacity(found.len());
        for line in found {
            let k = &t.keys[line];
            // removed meanwhile: left out
            if let Some(v) = self.components.get(k)? {
                out.push(decode(&show(k), &v)?);
            }
        }
        Ok(out)
    }

    pub(super) fn count_records(&self, prefix: &str, words: &[String]) -> Result<Counts> {
        let words = lower(words);
        let words = &words[..];
        let t = self.key_text()?;
        let (from, to) = t.range(prefix.as_bytes());
        let mut counts = Counts::default();
        if words.is_empty() {
            if to > from {
                counts.records = (to - from) as u64;
                counts.components = u64::from(t.component[to - 1] - t.component[from]) + 1;
            }
            return Ok(counts);
        }
        let mut last = None;
        for line in t.matching(words, from, to) {
            counts.records += 1;
            if last != Some(t.component[line]) {
                counts.components += 1;
                last = Some(t.component[line]);
            }
        }
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_of_the_keys() {
        let keys: BTreeSet<Vec<u8>> = [
            "asyn\0R4.39\0rhel9",
            "asyn\0R4.39\0rocky9",
            "asyn\0R4.40\0rocky9",
            "motor\0R7\0rocky9",
        ]
        .iter()
        .map(|k| k.as_bytes().to_vec())
        .collect();
        let t = Text::new(&keys);
        let w = |ws: &[&str]| ws.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let found = |ws: &[&str], prefix: &str| {
            let (a, b) = t.range(prefix.as_bytes());
            t.matching(&w(ws), a, b).collect::<Vec<_>>()
        };
        assert_eq!(found(&["r4.3", "rocky"], ""), [1]);
        assert_eq!(found(&["asyn/r4"], ""), [0, 1, 2]);
        assert_eq!(found(&[], ""), [0, 1, 2, 3]);
        assert_eq!(found(&["rocky9"], "mo"), [3]);
        assert_eq!(found(&["asyn", "rhel"], "motor"), Vec::<usize>::new());
        assert_eq!(found(&["9"], ""), [0, 1, 2, 3], "one line once");
        assert_eq!(t.component, [0, 0, 0, 1]);
        assert_eq!(t.range(b"zzz"), (4, 4));
    }
}
