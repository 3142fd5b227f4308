//! The blocked-word filter: does a chat message contain one of a list of words?
//!
//! Matching is case-insensitive and treats full-width and half-width forms as the same
//! character: both sides are folded with [`fold`], so `ＡＢＣ`, `abc` and `Abc` are one word, as are
//! half-width `ｶﾞ` and full-width `ガ`. The words go into one Aho-Corasick
//! automaton, so a check is one pass over the message whatever the number of words. A message
//! that is pure ASCII is searched as it is (the automaton ignores ASCII case), without folding
//! or allocating.
//!
//! The deployment-wide list comes from a file ([`WordFilter::from_file`]): one word or phrase a
//! line, `#` starts a comment line, blank lines are skipped.
//!
//! Must not: say which word matched to the sender (only that one did).

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use std::borrow::Cow;
use std::path::Path;
use unicode_normalization::UnicodeNormalization;

/// Most words the deployment-wide file may hold.
pub const MAX_FILE_WORDS: usize = 100_000;
/// Longest entry of the deployment-wide file, in characters.
pub const MAX_FILE_WORD_CHARS: usize = 200;
/// Largest deployment-wide file read.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// The form words and messages are compared in: full-width forms become their ASCII twins
/// (`Ａ`→`A`, `！`→`!`, the ideographic space → a space), then lowercase. Text with half-width
/// katakana or other half-width forms (U+FF61..U+FFEE) takes Unicode NFKC instead, which also
/// joins `ｶﾞ` into `ガ`. Borrowed when nothing changes (most chat).
pub fn fold(text: &str) -> Cow<'_, str> {
    if text.is_ascii() {
        if text.bytes().any(|b| b.is_ascii_uppercase()) {
            return Cow::Owned(text.to_ascii_lowercase());
        }
        return Cow::Borrowed(text);
    }
    if text.chars().any(|c| ('\u{FF61}'..='\u{FFEE}').contains(&c)) {
        return Cow::Owned(text.nfkc().flat_map(char::to_lowercase).collect());
    }
    if !text
        .chars()
        .any(|c| c.is_uppercase() || full_width(c).is_some())
    {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .map(|c| full_width(c).unwrap_or(c))
            .flat_map(char::to_lowercase)
            .collect(),
    )
}

/// The ASCII twin of a full-width form (U+FF01..U+FF5E, and U+3000 → space).
fn full_width(c: char) -> Option<char> {
    match c {
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0),
        '\u{3000}' => Some(' '),
        _ => None,
    }
}

/// A bad deployment-wide word list.
#[derive(Debug, thiserror::Error)]
pub enum WordsError {
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: larger than {MAX_FILE_BYTES} bytes")]
    TooLarge { path: String },
    #[error("{path}:{line}: {reason}")]
    Line {
        path: String,
        line: usize,
        reason: String,
    },
    #[error("{path}: more than {MAX_FILE_WORDS} words")]
    TooMany { path: String },
}

/// A compiled word list. Empty lists match nothing at no cost.
#[derive(Clone, Default)]
pub struct WordFilter {
    automaton: Option<AhoCorasick>,
    len: usize,
}

impl std::fmt::Debug for WordFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WordFilter({} words)", self.len)
    }
}

impl WordFilter {
    /// Compiles `words` (as entered; each is folded, empty ones are skipped).
    pub fn new<S: AsRef<str>>(words: &[S]) -> Self {
        let mut folded: Vec<String> = words
            .iter()
            .map(|w| fold(w.as_ref().trim()).into_owned())
            .filter(|w| !w.is_empty())
            .collect();
        folded.sort_unstable();
        folded.dedup();
        if folded.is_empty() {
            return WordFilter::default();
        }
        // A DFA: one table step per byte of the message. Its memory grows with the words
        // (about 2 MB for 1,000 words; measured in bench/moderation.sh), paid once per room.
        let automaton = AhoCorasickBuilder::new()
            .kind(Some(AhoCorasickKind::DFA))
            .match_kind(MatchKind::Standard)
            .ascii_case_insensitive(true)
            .build(&folded)
            .expect("folded words of bounded length always compile");
        WordFilter {
            len: folded.len(),
            automaton: Some(automaton),
        }
    }

    /// Heap bytes of the compiled automaton.
    pub fn memory_usage(&self) -> usize {
        self.automaton.as_ref().map_or(0, |a| a.memory_usage())
    }

    /// Number of distinct words.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `text` contains one of the words.
    pub fn is_match(&self, text: &str) -> bool {
        match &self.automaton {
            None => false,
            // ASCII: the automaton ignores ASCII case, and folding leaves ASCII alone.
            Some(ac) if text.is_ascii() => ac.is_match(text),
            Some(ac) => ac.is_match(fold(text).as_ref()),
        }
    }

    /// Like [`Self::is_match`] for text already folded with [`fold`].
    pub fn is_match_folded(&self, folded: &str) -> bool {
        self.automaton
            .as_ref()
            .is_some_and(|ac| ac.is_match(folded))
    }

    /// Reads the deployment-wide list: one word a line, `#` comments, blank lines skipped; every
    /// entry at most [`MAX_FILE_WORD_CHARS`] characters, at most [`MAX_FILE_WORDS`] entries.
    pub fn from_file(path: &Path) -> Result<Self, WordsError> {
        let shown = path.display().to_string();
        let io = |source| WordsError::Io {
            path: shown.clone(),
            source,
        };
        if std::fs::metadata(path).map_err(io)?.len() > MAX_FILE_BYTES {
            return Err(WordsError::TooLarge { path: shown });
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        Self::parse_list(&text, &shown)
    }

    /// [`Self::from_file`] on text already read; `path` names it in errors.
    pub fn parse_list(text: &str, path: &str) -> Result<Self, WordsError> {
        let mut words = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |reason: String| WordsError::Line {
                path: path.to_string(),
                line: i + 1,
                reason,
            };
            if line.chars().count() > MAX_FILE_WORD_CHARS {
                return Err(bad(format!(
                    "an entry is at most {MAX_FILE_WORD_CHARS} characters"
                )));
            }
            if line.chars().any(char::is_control) {
                return Err(bad("control characters are not allowed".into()));
            }
            words.push(line.to_string());
            if words.len() > MAX_FILE_WORDS {
                return Err(WordsError::TooMany {
                    path: path.to_string(),
                });
            }
        }
        Ok(WordFilter::new(&words))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_and_width_do_not_matter() {
        let f = WordFilter::new(&["Spam", "ｶﾞﾁｬ", "ＦＵＬＬ", "广告"]);
        for hit in [
            "buy SPAM now",
            "spam",
            "ｓｐａｍ",
            "sPaM!",
            "ガチャ time",
            "ｶﾞﾁｬ",
            "full width",
            "ＦＵＬＬ",
            "看广告",
        ] {
            assert!(f.is_match(hit), "{hit} should match");
        }
        for miss in ["spa m", "sp", "カチャ", "ful", "广", ""] {
            assert!(!f.is_match(miss), "{miss} should not match");
        }
        assert_eq!(f.len(), 4);
    }

    #[test]
    fn duplicates_fold_to_one_and_empty_lists_match_nothing() {
        assert_eq!(WordFilter::new(&["abc", "ABC", "ＡＢＣ", "  "]).len(), 1);
        let empty = WordFilter::new::<&str>(&[]);
        assert!(empty.is_empty() && !empty.is_match("anything"));
    }

    #[test]
    fn fold_borrows_folded_ascii() {
        assert!(matches!(fold("already lower"), Cow::Borrowed(_)));
        assert!(
            matches!(fold("主播加油"), Cow::Borrowed(_)),
            "nothing to fold"
        );
        assert_eq!(fold("加油！ＧＧ"), "加油!gg");
        assert_eq!(fold("ｶﾞﾁｬ"), "ガチャ");
        assert_eq!(fold("Ωmega"), "ωmega");
        assert_eq!(fold("MiXeD"), "mixed");
        assert_eq!(fold("Ｈｅｌｌｏ\u{3000}Ｗｏｒｌｄ"), "hello world");
    }

    #[test]
    fn the_file_format_has_comments_blank_lines_and_bounds() {
        let f =
            WordFilter::parse_list("# house rules\n\n  badword \nＯＴＨＥＲ\n", "w.txt").unwrap();
        assert_eq!(f.len(), 2);
        assert!(f.is_match("a BADWORD here") && f.is_match("other"));
        let long = format!("ok\n{}\n", "x".repeat(MAX_FILE_WORD_CHARS + 1));
        let err = WordFilter::parse_list(&long, "w.txt")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("w.txt:2:"), "{err}");
        assert!(WordFilter::parse_list("a\u{1}b", "w.txt").is_err());
    }

    #[test]
    fn from_file_reads_a_real_file_and_reports_a_missing_one() {
        let dir = std::env::temp_dir().join(format!("lh-words-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("words.txt");
        std::fs::write(&path, "alpha\n# no\nβeta\n").unwrap();
        let f = WordFilter::from_file(&path).unwrap();
        assert!(f.is_match("ALPHA") && f.is_match("ΒETA") && !f.is_match("no"));
        assert!(WordFilter::from_file(&dir.join("missing.txt")).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }
}
