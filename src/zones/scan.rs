//! Where a zone file's entries and tokens are, so errors get a line and
//! column: hickory-proto 0.26's `Parser` gives none and keeps its lexer
//! private. The rules are RFC 1035's (section 5.1) as hickory applies them:
//!
//! - An entry ends at a line end (`\n` or `\r\n`) outside parentheses and
//!   quotes. Whitespace separates tokens; `;` starts a comment up to the
//!   line end; a token starting with `(` opens parentheses, `)` closes them.
//! - A token starting with `"` is a quoted string up to the next unescaped
//!   `"`, over line ends too; its escapes (`\DDD`, or `\` and a visible
//!   character) are left as written. Any other token is a word, up to
//!   whitespace, `;` or `)`.
//! - Whitespace starting an entry keeps the previous owner; `@` is the
//!   origin; `$` and the capitals after it are `$ORIGIN`, `$TTL` or
//!   `$INCLUDE`.
//! - Control characters other than whitespace only occur in quoted strings.
//!
//! Like hickory, and unlike RFC 1035: no quoted strings inside parentheses
//! (`"` is an ordinary character there), no escapes outside quotes (`a\;b`
//! is the word `a\` and a comment), and `@x` is `@` and `x`. `tests.rs` pins
//! these and checks that hickory and the scanner read every zone text the
//! tests load alike, so a hickory upgrade that reads files otherwise fails
//! the tests instead of misplacing errors.

/// What a scanned token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// Whitespace starting an entry: its owner is the previous entry's.
    Blank,
    /// An `@` starting a token outside parentheses: the current origin.
    At,
    /// A word or a quoted string outside parentheses.
    Word,
    /// A `(`; the words up to its [`Kind::ListClose`] are list items.
    ListOpen,
    /// A word inside parentheses (where `"` is an ordinary character).
    ListItem,
    /// A `)` closing a [`Kind::ListOpen`].
    ListClose,
    /// `$ORIGIN`, `$TTL` or `$INCLUDE` (the text is the name without `$`).
    Dollar,
}

/// One token and the 1-based line and column (in characters) it starts at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Tok {
    /// Which kind of token.
    pub kind: Kind,
    /// The token as written; a quoted string without its quotes.
    pub text: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub col: usize,
}

/// One entry: the bytes `start..end` of the file and its tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    /// Byte offset of the first character.
    pub start: usize,
    /// Byte offset just past the entry's line end (or the end of the file).
    pub end: usize,
    /// 1-based line of the first character.
    pub line: usize,
    /// Tokens in order, up to a lexical error if there is one.
    pub tokens: Vec<Tok>,
    /// Where the entry breaks the rules above (line, column), if it does.
    /// Scanning stops there: such an entry is the last and runs to the end
    /// of the file.
    pub lex_error: Option<(usize, usize)>,
}

impl Entry {
    /// Line and column of the first token that is not the leading blank, or
    /// of the entry's first character when there is none.
    pub fn position(&self) -> (usize, usize) {
        self.tokens
            .iter()
            .find(|t| t.kind != Kind::Blank)
            .map_or((self.line, 1), |t| (t.line, t.col))
    }
}

/// Splits `text` into entries.
pub(super) fn scan(text: &str) -> Vec<Entry> {
    let mut s = Scanner {
        text,
        pos: 0,
        at: (1, 1),
    };
    let mut entries = Vec::new();
    while s.pos < text.len() {
        let (start, line) = (s.pos, s.at.0);
        let mut tokens = Vec::new();
        let lex_error = s.entry(&mut tokens).err();
        let end = lex_error.map_or(s.pos, |_| text.len());
        entries.push(Entry {
            start,
            end,
            line,
            tokens,
            lex_error,
        });
        if lex_error.is_some() {
            break;
        }
    }
    entries
}

/// The text being scanned and a position in it.
struct Scanner<'a> {
    text: &'a str,
    /// Byte offset.
    pos: usize,
    /// 1-based line and column (in characters) of `pos`.
    at: (usize, usize),
}

/// A lexical error: the line and column it is at.
type Error = (usize, usize);

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        self.at = if c == '\n' {
            (self.at.0 + 1, 1)
        } else {
            (self.at.0, self.at.1 + 1)
        };
        Some(c)
    }

    /// Reads one entry's tokens into `out`, up to and past its line end.
    fn entry(&mut self, out: &mut Vec<Tok>) -> Result<(), Error> {
        let token = |kind, text, (line, col)| Tok {
            kind,
            text,
            line,
            col,
        };
        if self
            .peek()
            .is_some_and(|c| c.is_whitespace() && !is_line_end(c))
        {
            out.push(token(Kind::Blank, String::new(), self.at));
        }
        // Where the open `(` is, inside parentheses.
        let mut open = None;
        loop {
            let at = self.at;
            let Some(c) = self.peek() else {
                return open.map_or(Ok(()), Err);
            };
            match c {
                _ if is_line_end(c) && open.is_none() => return self.line_end(),
                ';' => {
                    self.skip_while(|c| !is_line_end(c));
                }
                _ if c.is_whitespace() => {
                    self.bump();
                }
                '(' | '@' if open.is_none() => {
                    self.bump();
                    let kind = if c == '@' {
                        Kind::At
                    } else {
                        open = Some(at);
                        Kind::ListOpen
                    };
                    out.push(token(kind, c.to_string(), at));
                }
                ')' if open.is_some() => {
                    self.bump();
                    open = None;
                    out.push(token(Kind::ListClose, ")".into(), at));
                }
                ')' => return Err(at),
                _ if c.is_control() => return Err(at),
                _ => {
                    let (kind, text) = match (open, c) {
                        (Some(_), _) => (Kind::ListItem, self.word()),
                        (None, '"') => (Kind::Word, self.quoted()?),
                        (None, '$') => {
                            self.bump();
                            match self.skip_while(|c| c.is_ascii_uppercase()) {
                                name @ ("ORIGIN" | "TTL" | "INCLUDE") => {
                                    (Kind::Dollar, name.into())
                                }
                                _ => return Err(at),
                            }
                        }
                        _ => (Kind::Word, self.word()),
                    };
                    out.push(token(kind, text, at));
                }
            }
        }
    }

    /// `\r`s then `\n`: the end of an entry.
    fn line_end(&mut self) -> Result<(), Error> {
        self.skip_while(|c| c == '\r');
        let at = self.at;
        match self.bump() {
            Some('\n') => Ok(()),
            _ => Err(at),
        }
    }

    /// Moves past the characters that satisfy `f` and returns them.
    fn skip_while(&mut self, f: impl Fn(char) -> bool) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.bump();
        }
        &self.text[start..self.pos]
    }

    /// An unquoted word, as written: up to whitespace, `;` or `)`.
    fn word(&mut self) -> String {
        let end = |c: char| c.is_whitespace() || c.is_control() || c == ';' || c == ')';
        self.skip_while(|c| !end(c)).into()
    }

    /// A quoted string from its opening `"`: the text between the quotes,
    /// escapes as written.
    fn quoted(&mut self) -> Result<String, Error> {
        let open = self.at;
        self.bump();
        let start = self.pos;
        loop {
            let at = self.at;
            match self.bump() {
                None => return Err(open),
                Some('"') => return Ok(self.text[start..self.pos - 1].to_string()),
                Some('\\') => match self.peek() {
                    // Where the escape goes wrong: the `\` at the end of the
                    // text, else the character that is not allowed.
                    None => return Err(at),
                    Some(c) if c.is_numeric() => {
                        for _ in 0..3 {
                            let at = self.at;
                            if !self.bump().is_some_and(|d| d.is_ascii_digit()) {
                                return Err(at);
                            }
                        }
                    }
                    Some(c) if !c.is_control() => {
                        self.bump();
                    }
                    Some(_) => return Err(self.at),
                },
                Some(_) => {}
            }
        }
    }
}

/// `\n` or `\r`: a line end outside parentheses and quotes.
fn is_line_end(c: char) -> bool {
    c == '\n' || c == '\r'
}
