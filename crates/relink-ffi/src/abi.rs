//! The ABI rule of the options structs: each begins with `size_t
//! struct_size`, so fields can be added without breaking programs built
//! against an older header (the `cbSize` of Win32, rustls-ffi's and
//! SQLite's versioned structs).
//!
//! - `X_default(&x, sizeof x)` fills the layout the caller's header knows
//!   (no more than `sizeof x` bytes are written) and sets `struct_size`.
//! - A function that takes the struct reads `struct_size` first and then
//!   only that many bytes; fields the caller's layout does not have keep
//!   their defaults.
//! - Accepted sizes are those of released layouts (the 0.1 layout and the
//!   current one); any other size, a zeroed struct or a header newer than
//!   the library among them, is `RELINK_STRUCT_SIZE`, never a read past
//!   the caller's struct.
//! - New fields are only ever appended. `relink_backoff_policy` is embedded
//!   in other structs, so its own layout never changes: a new backoff
//!   setting is appended to the struct that embeds it.
//!
//! Knows nothing of what the fields mean.

use std::mem::{align_of, size_of};

use crate::boundary::*;

/// A `#[repr(C)]` options struct whose first field is `struct_size: usize`.
pub(crate) trait Versioned: Copy {
    /// The C name, for messages (`"relink_options"`).
    const NAME: &'static str;
    /// The function that fills it (`"relink_options_default"`).
    const DEFAULT_FN: &'static str;
    /// The size of every released layout, oldest first; the current
    /// (`size_of::<Self>()`) among them.
    fn released_sizes() -> [usize; 2];
    /// The defaults, with `struct_size` the current size.
    fn defaults() -> FfiResult<Self>;
    /// Sets `struct_size`.
    fn set_size(&mut self, size: usize);
}

/// Implements [`Versioned`] for an options struct: `$last` (of type `$t`)
/// is the last field of its 0.1 layout; `$defaults` makes the defaults.
macro_rules! versioned {
    ($ty:ident, last_of_0_1: $last:ident: $t:ty, defaults: $defaults:expr) => {
        impl $crate::abi::Versioned for $ty {
            const NAME: &'static str = stringify!($ty);
            const DEFAULT_FN: &'static str = concat!(stringify!($ty), "_default");
            fn released_sizes() -> [usize; 2] {
                [
                    $crate::abi::layout_size::<Self>(
                        std::mem::offset_of!(Self, $last) + std::mem::size_of::<$t>(),
                    ),
                    std::mem::size_of::<Self>(),
                ]
            }
            fn defaults() -> $crate::boundary::FfiResult<Self> {
                $defaults
            }
            fn set_size(&mut self, size: usize) {
                self.struct_size = size;
            }
        }
    };
}
pub(crate) use versioned;

/// The size of a layout whose last field ends at `end`: rounded up to the
/// struct's alignment, as C pads it.
pub(crate) const fn layout_size<T>(end: usize) -> usize {
    let align = align_of::<T>();
    end.div_ceil(align) * align
}

fn check_size<T: Versioned>(size: usize) -> FfiResult {
    let sizes = T::released_sizes();
    if sizes.contains(&size) && size <= size_of::<T>() && size >= size_of::<usize>() {
        return Ok(());
    }
    let known = sizes
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(" or ");
    let why = if size == 0 {
        "it was not filled by".to_owned()
    } else if size > size_of::<T>() {
        format!(
            "the program's header is newer than this library ({} {}), which does not know \
             its fields: use the header installed with this library, or a newer library; \
             fill the struct with",
            env!("CARGO_PKG_NAME"),
            env!("CARGO_PKG_VERSION")
        )
    } else {
        "fill the struct with".to_owned()
    };
    Err(relink_error::new(
        RELINK_STRUCT_SIZE,
        format!(
            "`{name}.struct_size` is {size}: this library accepts {known} (sizeof({name}) of \
             its releases); {why} {default}(&x, sizeof x), which sets it",
            name = T::NAME,
            default = T::DEFAULT_FN,
        ),
    ))
}

/// `X_default(out, size)`: the defaults of the layout `size` names, at most
/// `size` bytes written.
pub(crate) fn write_defaults<T: Versioned>(out: *mut T, size: usize) -> FfiResult {
    check_out(out, "out")?;
    check_size::<T>(size)?;
    let mut value = T::defaults()?;
    value.set_size(size);
    // SAFETY: `out` is not NULL and points to `size` writable bytes (the
    // contract: `size` is the caller's `sizeof`); `size` is at most
    // `size_of::<T>()` (checked), so the source is `size` readable bytes.
    unsafe {
        std::ptr::copy_nonoverlapping((&value as *const T).cast::<u8>(), out.cast::<u8>(), size)
    };
    Ok(())
}

/// Reads a struct through its `struct_size`: the caller's bytes over the
/// defaults. NULL is `RELINK_INVALID_ARGUMENT` naming `what`.
///
/// # Safety
/// `p` is NULL or points to a struct of `T`'s family whose first
/// `struct_size` bytes are readable (the contract of every function taking
/// one).
pub(crate) unsafe fn read<T: Versioned>(p: *const T, what: &str) -> FfiResult<T> {
    if p.is_null() {
        return Err(relink_error::null(what));
    }
    // SAFETY: not NULL, and every layout of the family begins with an
    // aligned `size_t` (contract).
    let size = unsafe { p.cast::<usize>().read() };
    check_size::<T>(size)?;
    let mut value = T::defaults()?;
    // SAFETY: `size` bytes are readable at `p` (contract) and writable in
    // `value` (`size <= size_of::<T>()`, checked). Every field of these
    // structs is an integer, a float or a pointer: any bytes are a value.
    unsafe {
        std::ptr::copy_nonoverlapping(p.cast::<u8>(), (&mut value as *mut T).cast::<u8>(), size)
    };
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::offset_of;

    /// A struct as released in "0.1" ...
    #[repr(C)]
    #[derive(Debug, Clone, Copy, PartialEq)]
    struct Old {
        struct_size: usize,
        a: u64,
        b: u32,
    }

    /// ... and the same with a field appended in a later release.
    #[repr(C)]
    #[derive(Debug, Clone, Copy, PartialEq)]
    struct New {
        struct_size: usize,
        a: u64,
        b: u32,
        added: u64,
    }

    impl Versioned for New {
        const NAME: &'static str = "new";
        const DEFAULT_FN: &'static str = "new_default";
        fn released_sizes() -> [usize; 2] {
            [
                layout_size::<New>(offset_of!(New, b) + size_of::<u32>()),
                size_of::<New>(),
            ]
        }
        fn defaults() -> FfiResult<Self> {
            Ok(New {
                struct_size: size_of::<New>(),
                a: 1,
                b: 2,
                added: 3,
            })
        }
        fn set_size(&mut self, size: usize) {
            self.struct_size = size;
        }
    }

    #[test]
    fn an_old_layout_is_read_with_defaults_for_what_it_lacks() {
        assert_eq!(New::released_sizes()[0], size_of::<Old>());
        let old = Old {
            struct_size: size_of::<Old>(),
            a: 10,
            b: 20,
        };
        // SAFETY: `old` is an `Old`, the first layout of `New`'s family.
        let read = unsafe { read::<New>((&old as *const Old).cast(), "x") }.unwrap();
        assert_eq!((read.a, read.b, read.added), (10, 20, 3));
    }

    #[test]
    fn defaults_fill_no_more_than_the_callers_layout() {
        let mut old = [0xAAu8; size_of::<Old>() + 8];
        write_defaults::<New>(old.as_mut_ptr().cast(), size_of::<Old>()).unwrap();
        assert!(old[size_of::<Old>()..].iter().all(|&b| b == 0xAA));
        // SAFETY: the first bytes now hold an `Old` (aligned copy below).
        let filled: Old = unsafe { std::ptr::read_unaligned(old.as_ptr().cast()) };
        assert_eq!(filled.struct_size, size_of::<Old>());
        assert_eq!((filled.a, filled.b), (1, 2));
    }

    #[test]
    fn other_sizes_are_refused_with_a_code_that_says_so() {
        for size in [0, 1, size_of::<Old>() + 1, size_of::<New>() + 8, usize::MAX] {
            let mut value = New::defaults().unwrap();
            value.struct_size = size;
            // SAFETY: `value` is a live `New`; a bad size is refused before
            // anything past `struct_size` is read.
            let err = unsafe { read::<New>(&value, "x") }.unwrap_err();
            assert_eq!(err.code(), RELINK_STRUCT_SIZE, "size {size}");
            assert_eq!(
                write_defaults::<New>(&mut value, size).unwrap_err().code(),
                RELINK_STRUCT_SIZE
            );
        }
        // SAFETY: NULL is checked first.
        let null = unsafe { read::<New>(std::ptr::null(), "x") }.unwrap_err();
        assert_eq!(null.code(), RELINK_INVALID_ARGUMENT);
    }
}
