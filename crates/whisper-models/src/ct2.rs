//! Reader for CTranslate2 model directories as shipped by faster-whisper: `model.bin` (binary
//! version 6) and `vocabulary.txt`.
//!
//! `model.bin` layout, all little endian:
//!
//! ```text
//! u32 binary_version | string spec_name | u32 spec_revision | u32 n_variables
//! n_variables × { string name | u8 rank | u32 dims[rank] | u8 dtype | u32 nbytes | nbytes of data }
//! u32 n_aliases | n_aliases × { string alias | string target }
//! ```
//!
//! A string is a `u16` length that counts a trailing NUL, then that many bytes. The file ends right
//! after the alias table. `vocabulary.txt` holds one token a line in GPT-2's byte-to-unicode form.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

/// The only `model.bin` layout this reader understands.
pub const SUPPORTED_BINARY_VERSION: u32 = 6;

/// Why a CTranslate2 file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Ct2Error {
    #[error("cannot read {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("read failed while reading {what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("file is truncated: it ends inside {what}")]
    Truncated { what: String },
    #[error(
        "unsupported ctranslate2 binary version {found} (expected {SUPPORTED_BINARY_VERSION}); \
         is this a ctranslate2 model.bin?"
    )]
    UnsupportedVersion { found: u32 },
    #[error("variable {name} has unknown dtype code {code}")]
    UnknownDtype { name: String, code: u8 },
    #[error("variable {name} holds {nbytes} bytes, but dims {dims:?} of {dtype} need {expected}")]
    SizeMismatch { name: String, dims: Vec<usize>, dtype: DType, nbytes: usize, expected: usize },
    #[error("{what} is not valid utf-8")]
    BadString { what: String },
    #[error("variable {0} appears twice")]
    DuplicateVariable(String),
    #[error("alias {alias} points to missing variable {target}")]
    DanglingAlias { alias: String, target: String },
    #[error("unexpected bytes after the alias table")]
    TrailingBytes,
    #[error("vocabulary line {line}: {ch:?} is not a gpt-2 byte character")]
    BadVocabChar { line: usize, ch: char },
    #[error("vocabulary line {line} is empty")]
    EmptyVocabLine { line: usize },
}

/// Element type of a variable, with CTranslate2's numeric codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    F32,
    I8,
    I16,
    I32,
    F16,
    Bf16,
}

impl DType {
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => Self::F32,
            1 => Self::I8,
            2 => Self::I16,
            3 => Self::I32,
            4 => Self::F16,
            5 => Self::Bf16,
            _ => return None,
        })
    }

    pub fn code(self) -> u8 {
        match self {
            Self::F32 => 0,
            Self::I8 => 1,
            Self::I16 => 2,
            Self::I32 => 3,
            Self::F16 => 4,
            Self::Bf16 => 5,
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Self::I8 => 1,
            Self::I16 | Self::F16 | Self::Bf16 => 2,
            Self::F32 | Self::I32 => 4,
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self, Self::F32 | Self::F16 | Self::Bf16)
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::F32 => "float32",
            Self::I8 => "int8",
            Self::I16 => "int16",
            Self::I32 => "int32",
            Self::F16 => "float16",
            Self::Bf16 => "bfloat16",
        })
    }
}

/// One named array. `dims` is outermost first (row major); a scalar has no dims.
#[derive(Debug, Clone, PartialEq)]
pub struct Variable {
    pub name: String,
    pub dims: Vec<usize>,
    pub dtype: DType,
    /// Raw little-endian element bytes, `num_elements() * dtype.size()` of them.
    pub data: Vec<u8>,
}

impl Variable {
    pub fn rank(&self) -> usize {
        self.dims.len()
    }

    pub fn num_elements(&self) -> usize {
        self.dims.iter().product()
    }

    /// The value of a one-element integer variable (such as `encoder/num_heads`).
    pub fn scalar_i64(&self) -> Option<i64> {
        if self.num_elements() != 1 || self.data.len() != self.dtype.size() {
            return None;
        }
        let d = &self.data;
        match self.dtype {
            DType::I8 => Some(i64::from(i8::from_le_bytes([d[0]]))),
            DType::I16 => Some(i64::from(i16::from_le_bytes([d[0], d[1]]))),
            DType::I32 => Some(i64::from(i32::from_le_bytes([d[0], d[1], d[2], d[3]]))),
            DType::F32 | DType::F16 | DType::Bf16 => None,
        }
    }

    /// Elements of a floating-point variable widened to `f32`; `None` for integer variables.
    pub fn to_f32_vec(&self) -> Option<Vec<f32>> {
        decode_f32(self.dtype, &self.data)
    }
}

/// Widens little-endian float elements of `dtype` to `f32`; `None` for integer types.
pub fn decode_f32(dtype: DType, bytes: &[u8]) -> Option<Vec<f32>> {
    match dtype {
        DType::F32 => Some(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()),
        DType::F16 => Some(bytes.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect()),
        DType::Bf16 => Some(bytes.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect()),
        DType::I8 | DType::I16 | DType::I32 => None,
    }
}

/// A parsed `model.bin`: variables in file order plus the alias table.
#[derive(Debug, Clone, PartialEq)]
pub struct Ct2Model {
    pub spec_name: String,
    pub spec_revision: u32,
    variables: Vec<Variable>,
    index: HashMap<String, usize>,
    aliases: Vec<(String, String)>,
}

impl Ct2Model {
    /// An empty model, for building files (tests, fixtures).
    pub fn new(spec_name: impl Into<String>, spec_revision: u32) -> Self {
        Self {
            spec_name: spec_name.into(),
            spec_revision,
            variables: Vec::new(),
            index: HashMap::new(),
            aliases: Vec::new(),
        }
    }

    /// Reads and parses a `model.bin` file.
    pub fn open(path: &Path) -> Result<Self, Ct2Error> {
        let file = File::open(path).map_err(|source| Ct2Error::Open { path: path.to_path_buf(), source })?;
        Self::read_from(BufReader::with_capacity(1 << 20, file))
    }

    /// Parses a whole `model.bin` stream; the stream must end right after the alias table.
    pub fn read_from<R: Read>(reader: R) -> Result<Self, Ct2Error> {
        let mut r = Source { inner: reader };
        let version = r.u32("the binary version")?;
        if version != SUPPORTED_BINARY_VERSION {
            return Err(Ct2Error::UnsupportedVersion { found: version });
        }
        let spec_name = r.string("the spec name")?;
        let spec_revision = r.u32("the spec revision")?;
        let mut model = Self::new(spec_name, spec_revision);

        let n_variables = r.u32("the variable count")?;
        for i in 0..n_variables {
            let name = r.string(&format!("the name of variable #{i}"))?;
            let rank = r.u8(&name)?;
            let dims = (0..rank).map(|_| r.u32(&name).map(|d| d as usize)).collect::<Result<Vec<_>, _>>()?;
            let code = r.u8(&name)?;
            let dtype = DType::from_code(code).ok_or_else(|| Ct2Error::UnknownDtype { name: name.clone(), code })?;
            let nbytes = r.u32(&name)? as usize;
            let expected = dims.iter().try_fold(dtype.size(), |acc, &d| acc.checked_mul(d));
            if expected != Some(nbytes) {
                return Err(Ct2Error::SizeMismatch {
                    name,
                    dims,
                    dtype,
                    nbytes,
                    expected: expected.unwrap_or(usize::MAX),
                });
            }
            let data = r.bytes(nbytes, &name)?;
            model.push_variable(Variable { name, dims, dtype, data })?;
        }

        let n_aliases = r.u32("the alias count")?;
        for i in 0..n_aliases {
            let alias = r.string(&format!("alias #{i}"))?;
            let target = r.string(&format!("the target of alias {alias}"))?;
            model.push_alias(alias, target)?;
        }
        if r.at_end()? { Ok(model) } else { Err(Ct2Error::TrailingBytes) }
    }

    /// Appends a variable; names must be unique.
    pub fn push_variable(&mut self, variable: Variable) -> Result<(), Ct2Error> {
        if self.index.contains_key(&variable.name) {
            return Err(Ct2Error::DuplicateVariable(variable.name));
        }
        self.index.insert(variable.name.clone(), self.variables.len());
        self.variables.push(variable);
        Ok(())
    }

    /// Adds `alias` as another name for the existing variable `target`.
    pub fn push_alias(&mut self, alias: impl Into<String>, target: impl Into<String>) -> Result<(), Ct2Error> {
        let (alias, target) = (alias.into(), target.into());
        if !self.index.contains_key(&target) {
            return Err(Ct2Error::DanglingAlias { alias, target });
        }
        self.aliases.push((alias, target));
        Ok(())
    }

    /// Looks a variable up by name or alias.
    pub fn get(&self, name: &str) -> Option<&Variable> {
        let target = match self.index.get(name) {
            Some(&i) => return self.variables.get(i),
            None => self.aliases.iter().find(|(a, _)| a == name)?.1.as_str(),
        };
        self.index.get(target).and_then(|&i| self.variables.get(i))
    }

    pub fn variables(&self) -> &[Variable] {
        &self.variables
    }

    /// `(alias, target)` pairs in file order.
    pub fn aliases(&self) -> &[(String, String)] {
        &self.aliases
    }

    /// Serialises the model in binary version 6 (the inverse of [`Ct2Model::read_from`]).
    pub fn write_to<W: Write>(&self, mut w: W) -> io::Result<()> {
        w.write_all(&SUPPORTED_BINARY_VERSION.to_le_bytes())?;
        write_string(&mut w, &self.spec_name)?;
        w.write_all(&self.spec_revision.to_le_bytes())?;
        w.write_all(&len_u32(self.variables.len())?.to_le_bytes())?;
        for v in &self.variables {
            write_string(&mut w, &v.name)?;
            let rank = u8::try_from(v.dims.len()).map_err(|_| invalid("rank above 255"))?;
            w.write_all(&[rank])?;
            for &d in &v.dims {
                w.write_all(&len_u32(d)?.to_le_bytes())?;
            }
            w.write_all(&[v.dtype.code()])?;
            w.write_all(&len_u32(v.data.len())?.to_le_bytes())?;
            w.write_all(&v.data)?;
        }
        w.write_all(&len_u32(self.aliases.len())?.to_le_bytes())?;
        for (alias, target) in &self.aliases {
            write_string(&mut w, alias)?;
            write_string(&mut w, target)?;
        }
        Ok(())
    }
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg.to_owned())
}

fn len_u32(n: usize) -> io::Result<u32> {
    u32::try_from(n).map_err(|_| invalid("length does not fit in u32"))
}

fn write_string<W: Write>(w: &mut W, s: &str) -> io::Result<()> {
    let len = u16::try_from(s.len() + 1).map_err(|_| invalid("string longer than 65534 bytes"))?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(s.as_bytes())?;
    w.write_all(&[0])
}

/// Little-endian primitive reads that turn an early EOF into [`Ct2Error::Truncated`].
struct Source<R> {
    inner: R,
}

impl<R: Read> Source<R> {
    fn fill(&mut self, buf: &mut [u8], what: &str) -> Result<(), Ct2Error> {
        self.inner.read_exact(buf).map_err(|e| read_error(e, what))
    }

    fn u8(&mut self, what: &str) -> Result<u8, Ct2Error> {
        let mut b = [0; 1];
        self.fill(&mut b, what)?;
        Ok(b[0])
    }

    fn u16(&mut self, what: &str) -> Result<u16, Ct2Error> {
        let mut b = [0; 2];
        self.fill(&mut b, what)?;
        Ok(u16::from_le_bytes(b))
    }

    fn u32(&mut self, what: &str) -> Result<u32, Ct2Error> {
        let mut b = [0; 4];
        self.fill(&mut b, what)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Reads exactly `n` bytes without trusting `n` for the allocation up front.
    fn bytes(&mut self, n: usize, what: &str) -> Result<Vec<u8>, Ct2Error> {
        let mut buf = Vec::with_capacity(n.min(64 << 20));
        (&mut self.inner).take(n as u64).read_to_end(&mut buf).map_err(|e| read_error(e, what))?;
        if buf.len() == n { Ok(buf) } else { Err(Ct2Error::Truncated { what: what.to_owned() }) }
    }

    fn string(&mut self, what: &str) -> Result<String, Ct2Error> {
        let len = usize::from(self.u16(what)?);
        let mut bytes = self.bytes(len, what)?;
        if bytes.last() == Some(&0) {
            bytes.pop();
        }
        String::from_utf8(bytes).map_err(|_| Ct2Error::BadString { what: what.to_owned() })
    }

    fn at_end(&mut self) -> Result<bool, Ct2Error> {
        let mut b = [0; 1];
        loop {
            match self.inner.read(&mut b) {
                Ok(n) => return Ok(n == 0),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(read_error(e, "the end of the file")),
            }
        }
    }
}

fn read_error(e: io::Error, what: &str) -> Ct2Error {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        Ct2Error::Truncated { what: what.to_owned() }
    } else {
        Ct2Error::Io { what: what.to_owned(), source: e }
    }
}

/// Bytes GPT-2 leaves as their own code point; every other byte `b` becomes `256 + n`, where `n`
/// counts the bytes outside these ranges below `b`.
const fn is_printable_byte(b: u8) -> bool {
    matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF)
}

const fn build_byte_table() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut n = 0;
    let mut b = 0;
    while b < 256 {
        let code = if is_printable_byte(b as u8) {
            b as u32
        } else {
            n += 1;
            255 + n
        };
        table[b] = match char::from_u32(code) {
            Some(c) => c,
            None => panic!("gpt-2 byte table has no surrogates"),
        };
        b += 1;
    }
    table
}

const BYTE_TO_UNICODE: [char; 256] = build_byte_table();

/// GPT-2's byte-to-unicode table (`bytes_to_unicode()` in openai/gpt-2's `encoder.py`).
pub fn byte_to_unicode(b: u8) -> char {
    BYTE_TO_UNICODE[usize::from(b)]
}

/// The inverse of [`byte_to_unicode`]; `None` for characters outside the table.
pub fn unicode_to_byte(c: char) -> Option<u8> {
    let code = c as u32;
    if let Ok(b) = u8::try_from(code)
        && is_printable_byte(b)
    {
        return Some(b);
    }
    let n = code.checked_sub(256)?;
    (0..=255u8).filter(|&b| !is_printable_byte(b)).nth(usize::try_from(n).ok()?)
}

/// Decodes `vocabulary.txt` content: one token a line, returned as raw bytes in line order.
pub fn decode_vocabulary(text: &str) -> Result<Vec<Vec<u8>>, Ct2Error> {
    let text = text.strip_suffix('\n').unwrap_or(text);
    let mut inverse = HashMap::with_capacity(256);
    for b in 0..=255u8 {
        inverse.insert(byte_to_unicode(b), b);
    }
    text.split('\n')
        .enumerate()
        .map(|(i, line)| {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.is_empty() {
                return Err(Ct2Error::EmptyVocabLine { line: i + 1 });
            }
            line.chars().map(|ch| inverse.get(&ch).copied().ok_or(Ct2Error::BadVocabChar { line: i + 1, ch })).collect()
        })
        .collect()
}

/// Reads and decodes a `vocabulary.txt` file.
pub fn read_vocabulary(path: &Path) -> Result<Vec<Vec<u8>>, Ct2Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Ct2Error::Open { path: path.to_path_buf(), source })?;
    decode_vocabulary(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_model() -> Ct2Model {
        let mut m = Ct2Model::new("WhisperSpec", 3);
        let vars = [
            Variable {
                name: "decoder/num_heads".into(),
                dims: vec![],
                dtype: DType::I16,
                data: 6i16.to_le_bytes().to_vec(),
            },
            Variable {
                name: "decoder/embeddings/weight".into(),
                dims: vec![2, 3],
                dtype: DType::F16,
                data: [1.0f32, -2.0, 0.5, 0.0, 3.25, -0.125]
                    .iter()
                    .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
                    .collect(),
            },
            Variable {
                name: "encoder/layer_norm/gamma".into(),
                dims: vec![2],
                dtype: DType::F32,
                data: [1.5f32, 2.5].iter().flat_map(|x| x.to_le_bytes()).collect(),
            },
        ];
        for v in vars {
            m.push_variable(v).expect("unique names");
        }
        m.push_alias("decoder/projection/weight", "decoder/embeddings/weight").expect("target exists");
        m
    }

    fn to_bytes(m: &Ct2Model) -> Vec<u8> {
        let mut buf = Vec::new();
        m.write_to(&mut buf).expect("writing to a vec");
        buf
    }

    #[test]
    fn round_trips_variables_and_aliases() {
        let model = sample_model();
        let parsed = Ct2Model::read_from(to_bytes(&model).as_slice()).expect("parses");
        assert_eq!(parsed, model);
        assert_eq!(parsed.spec_name, "WhisperSpec");
        assert_eq!(parsed.spec_revision, 3);
        assert_eq!(parsed.variables().len(), 3);
        let heads = parsed.get("decoder/num_heads").expect("present");
        assert_eq!((heads.rank(), heads.scalar_i64()), (0, Some(6)));
        let proj = parsed.get("decoder/projection/weight").expect("alias resolves");
        assert_eq!(proj.name, "decoder/embeddings/weight");
        assert_eq!(proj.dims, vec![2, 3]);
        assert_eq!(proj.to_f32_vec(), Some(vec![1.0, -2.0, 0.5, 0.0, 3.25, -0.125]));
        let gamma = parsed.get("encoder/layer_norm/gamma").expect("present");
        assert_eq!(gamma.to_f32_vec(), Some(vec![1.5, 2.5]));
        assert!(parsed.get("missing").is_none());
    }

    #[test]
    fn every_strict_prefix_is_reported_as_truncated() {
        let bytes = to_bytes(&sample_model());
        for len in 0..bytes.len() {
            match Ct2Model::read_from(&bytes[..len]) {
                Err(Ct2Error::Truncated { .. }) => {}
                other => panic!("prefix of {len} bytes gave {other:?}"),
            }
        }
    }

    #[test]
    fn rejects_trailing_bytes_wrong_version_and_unknown_dtype() {
        let mut bytes = to_bytes(&sample_model());
        bytes.push(0);
        assert!(matches!(Ct2Model::read_from(bytes.as_slice()), Err(Ct2Error::TrailingBytes)));

        let mut bytes = to_bytes(&sample_model());
        bytes[..4].copy_from_slice(&5u32.to_le_bytes());
        let err = Ct2Model::read_from(bytes.as_slice()).expect_err("version 5");
        assert!(matches!(err, Ct2Error::UnsupportedVersion { found: 5 }));
        assert!(err.to_string().contains("binary version 5"));

        let mut m = Ct2Model::new("WhisperSpec", 3);
        m.push_variable(Variable { name: "x".into(), dims: vec![1], dtype: DType::I8, data: vec![7] }).expect("unique");
        let mut bytes = to_bytes(&m);
        // version, spec string (2 + 12), revision, count, name (2 + 2), rank, dim: then dtype.
        let dtype_at = 4 + 14 + 4 + 4 + 4 + 1 + 4;
        assert_eq!(bytes[dtype_at], DType::I8.code());
        bytes[dtype_at] = 9;
        let err = Ct2Model::read_from(bytes.as_slice()).expect_err("dtype 9");
        assert!(matches!(err, Ct2Error::UnknownDtype { code: 9, .. }));
        assert_eq!(err.to_string(), "variable x has unknown dtype code 9");
    }

    #[test]
    fn rejects_size_mismatch_and_dangling_alias() {
        let mut m = Ct2Model::new("s", 1);
        m.push_variable(Variable { name: "x".into(), dims: vec![2], dtype: DType::F32, data: vec![0; 4] })
            .expect("unique");
        let err = Ct2Model::read_from(to_bytes(&m).as_slice()).expect_err("4 bytes for 2 f32");
        assert!(matches!(err, Ct2Error::SizeMismatch { nbytes: 4, expected: 8, .. }));
        assert!(matches!(m.push_alias("y", "nope"), Err(Ct2Error::DanglingAlias { .. })));
    }

    #[test]
    fn byte_table_matches_gpt2() {
        assert_eq!(byte_to_unicode(b'A'), 'A');
        assert_eq!(byte_to_unicode(b' '), 'Ġ'); // U+0120
        assert_eq!(byte_to_unicode(b'\n'), 'Ċ'); // U+010A
        assert_eq!(byte_to_unicode(0x00), '\u{100}');
        assert_eq!(byte_to_unicode(0x7F), '\u{121}');
        assert_eq!(byte_to_unicode(0xAD), '\u{143}');
        assert_eq!(byte_to_unicode(0xFF), 'ÿ');
        let mut seen = std::collections::HashSet::new();
        for b in 0..=255u8 {
            let c = byte_to_unicode(b);
            assert!(seen.insert(c), "{c:?} used twice");
            assert_eq!(unicode_to_byte(c), Some(b));
        }
        assert_eq!(unicode_to_byte(' '), None);
        assert_eq!(unicode_to_byte('\u{144}'), None);
    }

    #[test]
    fn decodes_vocabulary_lines_to_bytes() {
        let tokens = decode_vocabulary("!\nĠthe\nÃ©\n<|endoftext|>\n").expect("valid");
        assert_eq!(tokens, vec![b"!".to_vec(), b" the".to_vec(), "é".as_bytes().to_vec(), b"<|endoftext|>".to_vec()]);
        assert!(matches!(decode_vocabulary("a\nb c\n"), Err(Ct2Error::BadVocabChar { line: 2, ch: ' ' })));
        assert!(matches!(decode_vocabulary("a\n\nb"), Err(Ct2Error::EmptyVocabLine { line: 2 })));
    }
}
