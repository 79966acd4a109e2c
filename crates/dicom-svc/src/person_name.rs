//! Person names (PN) as QIDO-RS matches them: case- and accent-insensitively (as Azure's
//! collation does), and with `fuzzymatching=true` by word prefix ("jo do" finds "Doe^John").
//! The folded forms are computed here, at ingest and for queries alike, so both databases
//! compare the same strings.

use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

/// `raw` without accents (NFD, combining marks removed), in lowercase, without the padding
/// and trailing empty components PS3.5 6.2 lets writers add ("Doe^John^^" is "doe^john").
pub fn fold(raw: &str) -> String {
    let folded: String = raw
        .nfd()
        .filter(|c| !is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .collect();
    folded
        .trim_end_matches(['\0', ' ', '^', '='])
        .trim_start_matches(' ')
        .to_owned()
}

/// The words of a folded name: its components and the words inside them.
pub fn split_words(folded: &str) -> impl Iterator<Item = &str> {
    folded
        .split(|c: char| c == '^' || c == '=' || c == ',' || c.is_whitespace())
        .filter(|w| !w.is_empty())
}

/// What fuzzy matching searches: every word between single spaces, with a space before the
/// first and after the last, so that `LIKE '% jo%'` finds words that start with "jo".
pub fn words(raw: &str) -> String {
    let folded = fold(raw);
    let mut out = String::with_capacity(folded.len() + 2);
    out.push(' ');
    for w in split_words(&folded) {
        out.push_str(w);
        out.push(' ');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fold_case_accents_and_padding() {
        assert_eq!(fold("Müller^José^^ "), "muller^jose");
        assert_eq!(fold("DOE^JOHN"), fold("doe^john"));
        assert_eq!(words("Doe^John Paul=Dòw"), " doe john paul dow ");
        assert_eq!(words(""), " ");
    }
}
