//! Ferrite's execution engine.
//!
//! Modules are decoded and validated with `wasmparser` (WebAssembly 2.0 core without
//! SIMD), translated once per function into the register-style bytecode of
//! `ferrite_ir`, and run by an interpreter whose whole state (value stack, call
//! frames, instruction positions) is plain data in an [`Execution`]. Linear memory
//! is a paged `ferrite_heap::LinearMemory` reached through a software TLB.
//!
//! ```
//! use ferrite_vm::{Config, Extern, Module, Store, Value};
//!
//! let module = Module::from_text_or_binary(br#"
//!     (module (func (export "add") (param i32 i32) (result i32)
//!         local.get 0 local.get 1 i32.add))
//! "#)?;
//! let mut store = Store::new(Config::default());
//! let instance = store.instantiate(&module, &[])?;
//! let Some(Extern::Func(add)) = store.get_export(instance, "add") else { panic!() };
//! let results = store.invoke(add, &[Value::I32(2), Value::I32(40)], &mut |_: &mut Store, _, _: &[Value]| {
//!     unreachable!("no host functions")
//! })?;
//! assert_eq!(results, vec![Value::I32(42)]);
//! # Ok::<(), ferrite_vm::Error>(())
//! ```
//!
//! | Feature                       | Cost                                                   |
//! |-------------------------------|--------------------------------------------------------|
//! | translation                   | once per function at `Module::new`                     |
//! | wasm call                     | a frame push, zeroing locals, copying constants        |
//! | budget and interrupt checks   | fuel and flag at every back-edge and call (a load, a branch) |
//! | memory access                 | one software TLB tag compare on a hit (`ferrite_heap`)   |

mod error;
mod exec;
mod module;
mod ops;
mod snapshot;
mod store;
mod translate;
mod trap;
mod types;
mod value;

pub use error::Error;
pub use exec::{
    Execution, ExecutionImage, Frame, FrameImage, RunOutcome, StateImage, BACKTRACE_FRAMES_MAX,
};
pub use ferrite_core::{Ieee32, Ieee64, RefType, StackLimits, TrapCode, ValType};
pub use ferrite_heap::LinearMemory;
pub use module::{Export, ExportKind, Import, Module};
pub use snapshot::StoreImage;
pub use store::{Config, Extern, HostHandler, Store, TABLE_ELEMENTS_MAX};
pub use trap::{BacktraceFrame, Trap};
pub use types::{ExternType, FuncType, GlobalType, Limits, MemoryType, TableType};
pub use value::{ExternRef, Func, Global, HostFuncId, Instance, Memory, Table, Value};
