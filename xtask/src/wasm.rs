//! Reads the import section of a WebAssembly module, to check that a module
//! built for `wasm32-unknown-unknown` imports nothing from `env`: such an
//! import means something reached for the OS (a clock, a random source, libc)
//! and the module would fail to instantiate in a browser or Node.
//!
//! Hand-written (module header, section ids, LEB128, the import section) rather
//! than a `wasmparser` dependency: xtask stays std-only, and this is all of the
//! format the check needs.

use std::fmt;
use std::path::Path;

/// One import of a module: `module.name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    pub module: String,
    pub name: String,
}

/// Why a module could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed wasm module: {}", self.0)
    }
}

/// Fails when the module at `path` imports anything from `env`.
pub fn check_wasm_imports(path: &Path) -> Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    check_bytes(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

fn check_bytes(bytes: &[u8]) -> Result<(), String> {
    let imports = imports(bytes).map_err(|e| e.to_string())?;
    let from_env: Vec<String> = imports
        .iter()
        .filter(|i| i.module == "env")
        .map(|i| format!("env.{}", i.name))
        .collect();
    if from_env.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "imports from `env` (something reached for the OS): {}",
            from_env.join(", ")
        ))
    }
}

/// Every import of a module, in order.
pub fn imports(bytes: &[u8]) -> Result<Vec<Import>, ParseError> {
    let mut r = Reader { bytes, pos: 0 };
    if r.take(4)? != b"\0asm" {
        return Err(ParseError("no \\0asm magic".into()));
    }
    if r.take(4)? != [1, 0, 0, 0] {
        return Err(ParseError("not a version 1 module".into()));
    }
    let mut imports = Vec::new();
    while r.pos < bytes.len() {
        let id = r.byte()?;
        let size = r.len()?;
        let body = r.take(size)?;
        if id == IMPORT_SECTION {
            imports.extend(import_section(body)?);
        }
    }
    Ok(imports)
}

const IMPORT_SECTION: u8 = 2;

fn import_section(body: &[u8]) -> Result<Vec<Import>, ParseError> {
    let mut r = Reader {
        bytes: body,
        pos: 0,
    };
    let count = r.len()?;
    let mut imports = Vec::with_capacity(count.min(body.len()));
    for _ in 0..count {
        let module = r.name()?;
        let name = r.name()?;
        match r.byte()? {
            0x00 => drop(r.leb()?), // function: type index
            0x01 => {
                r.value_type()?; // table: element type, limits
                r.limits()?;
            }
            0x02 => r.limits()?, // memory
            0x03 => {
                r.value_type()?; // global: type, mutability
                r.byte()?;
            }
            0x04 => {
                r.byte()?; // tag: attribute, type index
                r.leb()?;
            }
            kind => return Err(ParseError(format!("unknown import kind {kind:#x}"))),
        }
        imports.push(Import { module, name });
    }
    Ok(imports)
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ParseError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| ParseError(format!("truncated at byte {}", self.pos)))?;
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn byte(&mut self) -> Result<u8, ParseError> {
        Ok(self.take(1)?[0])
    }

    /// Unsigned LEB128, up to 64 bits (at most 10 bytes).
    fn leb(&mut self) -> Result<u64, ParseError> {
        let mut value = 0u64;
        for i in 0..10 {
            let b = self.byte()?;
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(ParseError("LEB128 longer than 10 bytes".into()))
    }

    fn len(&mut self) -> Result<usize, ParseError> {
        usize::try_from(self.leb()?).map_err(|_| ParseError("length overflows usize".into()))
    }

    fn name(&mut self) -> Result<String, ParseError> {
        let n = self.len()?;
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| ParseError("name is not UTF-8".into()))
    }

    /// A value or reference type; the typed-reference forms (0x63/0x64) carry
    /// a heap type, a signed LEB128 we only need to skip.
    fn value_type(&mut self) -> Result<(), ParseError> {
        if matches!(self.byte()?, 0x63 | 0x64) {
            self.leb()?;
        }
        Ok(())
    }

    /// Limits: flags (bit 0: has max; bit 3: custom page size), min, max.
    fn limits(&mut self) -> Result<(), ParseError> {
        let flags = self.byte()?;
        self.leb()?;
        if flags & 0x01 != 0 {
            self.leb()?;
        }
        if flags & 0x08 != 0 {
            self.leb()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Vec<u8> {
        let mut v = vec![u8::try_from(s.len()).unwrap()];
        v.extend_from_slice(s.as_bytes());
        v
    }

    /// A module with a type section (one `() -> ()` function type) and an
    /// import section holding the given function imports and one memory.
    fn module(imports: &[(&str, &str)]) -> Vec<u8> {
        let mut m = b"\0asm\x01\0\0\0".to_vec();
        m.extend_from_slice(&[1, 4, 1, 0x60, 0, 0]); // type section
        let mut body = vec![u8::try_from(imports.len() + 1).unwrap()];
        for (module, field) in imports {
            body.extend(name(module));
            body.extend(name(field));
            body.extend_from_slice(&[0x00, 0x00]); // function of type 0
        }
        body.extend(name("js"));
        body.extend(name("mem"));
        body.extend_from_slice(&[0x02, 0x01, 0x01, 0x80, 0x01]); // memory 1..=128
        m.push(IMPORT_SECTION);
        m.push(u8::try_from(body.len()).unwrap());
        m.extend(body);
        m
    }

    #[test]
    fn reads_every_import() {
        let m = module(&[("wbg", "__wbindgen_throw"), ("env", "now")]);
        let names: Vec<String> = imports(&m)
            .unwrap()
            .into_iter()
            .map(|i| format!("{}.{}", i.module, i.name))
            .collect();
        assert_eq!(names, ["wbg.__wbindgen_throw", "env.now", "js.mem"]);
    }

    #[test]
    fn an_env_import_fails_the_check() {
        let err = check_bytes(&module(&[("wbg", "f"), ("env", "clock_time_get")])).unwrap_err();
        assert!(err.contains("env.clock_time_get"), "{err}");
    }

    #[test]
    fn a_module_without_env_imports_passes() {
        check_bytes(&module(&[("wbg", "__wbindgen_throw")])).unwrap();
        check_bytes(b"\0asm\x01\0\0\0").unwrap();
    }

    #[test]
    fn garbage_is_an_error_not_a_pass() {
        assert!(check_bytes(b"\0asm\x01\0").is_err());
        assert!(check_bytes(b"not wasm").is_err());
        let mut truncated = module(&[("env", "f")]);
        truncated.truncate(truncated.len() - 3);
        assert!(check_bytes(&truncated).is_err());
    }
}
