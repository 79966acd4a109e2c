//! Tokens of FHIRPath: identifiers (plain or `delimited`), literals, `%variables`,
//! `$this`-style specials and punctuation. Comments (`//`, `/* */`) are skipped.

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    /// A plain identifier; may be a keyword (`and`, `as`, `true`, ...): the parser decides.
    Ident(String),
    /// A `backtick` identifier: never a keyword.
    Delimited(String),
    /// A string literal, escapes resolved.
    Str(String),
    /// A number literal, as written.
    Num(String),
    /// A date/time literal without its `@` (`2020-01-01`, `2020-01-01T10:00Z`, `T10:00`).
    DateTime(String),
    /// `%name`, without the `%`.
    Var(String),
    /// `$this`, `$index`, `$total`, without the `$`.
    Special(String),
    /// Punctuation and symbolic operators.
    Sym(&'static str),
}

#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub tok: Tok,
    /// Offset in characters, for messages.
    pub pos: usize,
}

const SYMBOLS: [&str; 21] = [
    "!=", "!~", "<=", ">=", ".", ",", "(", ")", "[", "]", "{", "}", "|", "=", "~", "<", ">", "+",
    "-", "*", "&",
];

pub(crate) fn lex(src: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '/' && chars.get(i + 1) == Some(&'/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        if c == '/' && chars.get(i + 1) == Some(&'*') {
            i += 2;
            loop {
                if i + 1 >= chars.len() {
                    return Err(format!("unterminated comment at {start}"));
                }
                if chars[i] == '*' && chars[i + 1] == '/' {
                    i += 2;
                    break;
                }
                i += 1;
            }
            continue;
        }
        let tok = if c == '/' {
            i += 1;
            Tok::Sym("/")
        } else if is_ident_start(c) {
            while i < chars.len() && is_ident_part(chars[i]) {
                i += 1;
            }
            Tok::Ident(chars[start..i].iter().collect())
        } else if c == '`' {
            let (s, next) = quoted(&chars, i, '`')?;
            i = next;
            Tok::Delimited(s)
        } else if c == '\'' {
            let (s, next) = quoted(&chars, i, '\'')?;
            i = next;
            Tok::Str(s)
        } else if c.is_ascii_digit() {
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            if chars.get(i) == Some(&'.') && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()) {
                i += 1;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
            }
            Tok::Num(chars[start..i].iter().collect())
        } else if c == '@' {
            i += 1;
            let mut seen_t = false;
            while let Some(&d) = chars.get(i) {
                let ok = d.is_ascii_digit()
                    || matches!(d, ':' | '.' | 'Z')
                    || (d == '-' && !seen_t)
                    || (d == 'T' && !seen_t)
                    || (matches!(d, '+' | '-') && seen_t);
                if !ok {
                    break;
                }
                seen_t |= d == 'T';
                i += 1;
            }
            if i == start + 1 {
                return Err(format!("empty date/time literal at {start}"));
            }
            Tok::DateTime(chars[start + 1..i].iter().collect())
        } else if c == '%' {
            i += 1;
            match chars.get(i) {
                Some(&'`') => {
                    let (s, next) = quoted(&chars, i, '`')?;
                    i = next;
                    Tok::Var(s)
                }
                Some(&'\'') => {
                    let (s, next) = quoted(&chars, i, '\'')?;
                    i = next;
                    Tok::Var(s)
                }
                Some(&d) if is_ident_start(d) => {
                    let from = i;
                    while i < chars.len() && is_ident_part(chars[i]) {
                        i += 1;
                    }
                    Tok::Var(chars[from..i].iter().collect())
                }
                _ => return Err(format!("expected a variable name after '%' at {start}")),
            }
        } else if c == '$' {
            i += 1;
            let from = i;
            while i < chars.len() && is_ident_part(chars[i]) {
                i += 1;
            }
            if from == i {
                return Err(format!("expected a name after '$' at {start}"));
            }
            Tok::Special(chars[from..i].iter().collect())
        } else {
            let sym = SYMBOLS.iter().find(|s| {
                s.chars()
                    .enumerate()
                    .all(|(k, sc)| chars.get(i + k) == Some(&sc))
            });
            match sym {
                Some(s) => {
                    i += s.len();
                    Tok::Sym(s)
                }
                None => return Err(format!("unexpected character '{c}' at {start}")),
            }
        };
        out.push(Token { tok, pos: start });
    }
    Ok(out)
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_ident_part(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Reads a literal delimited by `quote` starting at `chars[at]`; returns it and the next index.
fn quoted(chars: &[char], at: usize, quote: char) -> Result<(String, usize), String> {
    let mut s = String::new();
    let mut i = at + 1;
    loop {
        let Some(&c) = chars.get(i) else {
            return Err(format!("unterminated literal starting at {at}"));
        };
        i += 1;
        if c == quote {
            return Ok((s, i));
        }
        if c != '\\' {
            s.push(c);
            continue;
        }
        let Some(&e) = chars.get(i) else {
            return Err(format!("unterminated literal starting at {at}"));
        };
        i += 1;
        match e {
            'n' => s.push('\n'),
            'r' => s.push('\r'),
            't' => s.push('\t'),
            'f' => s.push('\u{c}'),
            'u' => {
                let hex: String = chars.get(i..i + 4).unwrap_or_default().iter().collect();
                let code = u32::from_str_radix(&hex, 16)
                    .ok()
                    .filter(|_| hex.len() == 4)
                    .ok_or_else(|| format!("bad \\u escape at {}", i - 2))?;
                i += 4;
                // A lone surrogate cannot be a char: replaced rather than rejected.
                s.push(char::from_u32(code).unwrap_or('\u{fffd}'));
            }
            '\'' | '"' | '`' | '\\' | '/' => s.push(e),
            other => return Err(format!("unknown escape '\\{other}' at {}", i - 2)),
        }
    }
}
