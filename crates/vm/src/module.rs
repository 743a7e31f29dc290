//! Modules: decoded, validated and translated once, then instantiated any number of times.

use crate::{
    translate::{translate_function, CompiledFunc, ModuleEnv},
    types::{ExternType, FuncType, GlobalType, Limits, MemoryType, TableType},
    Error,
};
use ferrite_core::{RefType, ValType, WASM_PAGES_MAX};
use std::{collections::BTreeMap, sync::Arc};
use wasmparser::{Operator, Parser, Payload, Validator, WasmFeatures};

/// The WebAssembly 2.0 core features Ferrite implements (2.0 minus SIMD).
pub(crate) fn supported_features() -> WasmFeatures {
    WasmFeatures::WASM2.difference(WasmFeatures::SIMD)
}

/// Later features, each with the name used in `unsupported feature: <name>` errors.
fn unsupported_features() -> [(WasmFeatures, &'static str); 12] {
    [
        (WasmFeatures::SIMD, "simd"),
        (
            WasmFeatures::RELAXED_SIMD.union(WasmFeatures::SIMD),
            "relaxed-simd",
        ),
        (WasmFeatures::TAIL_CALL, "tail-call"),
        (WasmFeatures::MEMORY64, "memory64"),
        (WasmFeatures::THREADS, "threads"),
        (WasmFeatures::MULTI_MEMORY, "multi-memory"),
        (WasmFeatures::EXCEPTIONS, "exception-handling"),
        (WasmFeatures::LEGACY_EXCEPTIONS, "legacy-exception-handling"),
        (WasmFeatures::EXTENDED_CONST, "extended-const"),
        (WasmFeatures::FUNCTION_REFERENCES, "function-references"),
        (
            WasmFeatures::GC.union(WasmFeatures::FUNCTION_REFERENCES),
            "gc",
        ),
        (WasmFeatures::CUSTOM_PAGE_SIZES, "custom-page-sizes"),
    ]
}

/// A constant expression, as 2.0 allows them in global, element and data initializers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConstExpr {
    /// A number or null reference, as the bits of a slot cell.
    Cell(u64),
    /// `ref.func` of a function index.
    RefFunc(u32),
    /// `global.get` of an (imported) global index.
    GlobalGet(u32),
}

#[derive(Debug, Clone)]
pub(crate) enum SegmentMode {
    Passive,
    Active { index: u32, offset: ConstExpr },
    Declared,
}

#[derive(Debug, Clone)]
pub(crate) struct ElemSegment {
    pub mode: SegmentMode,
    pub items: Box<[ConstExpr]>,
}

#[derive(Debug, Clone)]
pub(crate) struct DataSegment {
    pub mode: SegmentMode,
    pub bytes: Arc<[u8]>,
}

/// An import of a module.
#[derive(Debug, Clone)]
pub struct Import {
    pub module: String,
    pub name: String,
    pub ty: ExternType,
}

/// What an export refers to, by index in the module's index spaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportKind {
    Func,
    Table,
    Memory,
    Global,
}

/// An export of a module.
#[derive(Debug, Clone)]
pub struct Export {
    pub name: String,
    pub kind: ExportKind,
    pub index: u32,
}

/// Names from the `name` custom section, for backtraces.
#[derive(Debug, Clone, Default)]
pub(crate) struct Names {
    pub module: Option<String>,
    pub funcs: BTreeMap<u32, String>,
}

#[derive(Debug)]
pub(crate) struct ModuleInner {
    pub types: Vec<FuncType>,
    pub imports: Vec<Import>,
    /// The type index of every function, imported ones first.
    pub funcs: Vec<u32>,
    pub imported_funcs: u32,
    pub imported_tables: u32,
    pub imported_memories: u32,
    pub imported_globals: u32,
    pub tables: Vec<TableType>,
    pub memories: Vec<MemoryType>,
    pub globals: Vec<(GlobalType, ConstExpr)>,
    pub exports: Vec<Export>,
    pub start: Option<u32>,
    pub elems: Vec<ElemSegment>,
    pub datas: Vec<DataSegment>,
    pub code: Vec<CompiledFunc>,
    pub names: Names,
}

/// A validated, translated WebAssembly module.
///
/// Cloning is cheap: the translated code is shared.
#[derive(Debug, Clone)]
pub struct Module {
    pub(crate) inner: Arc<ModuleInner>,
}

impl Module {
    /// Decodes, validates and translates a binary module.
    ///
    /// # Errors
    /// [`Error::Invalid`] for malformed or invalid modules, [`Error::Unsupported`] for
    /// modules that need a feature beyond the 2.0 core, [`Error::Limit`] for modules
    /// beyond Ferrite's implementation limits.
    pub fn new(bytes: &[u8]) -> Result<Self, Error> {
        validate(bytes)?;
        let inner = parse(bytes).map_err(|e| Error::Invalid(e.to_string()))??;
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// Like [`Module::new`], but also accepts the WebAssembly text format.
    ///
    /// # Errors
    /// [`Error::Malformed`] if the text does not parse; otherwise as [`Module::new`].
    pub fn from_text_or_binary(bytes: &[u8]) -> Result<Self, Error> {
        let binary = wat::parse_bytes(bytes).map_err(|e| Error::Malformed(e.to_string()))?;
        Self::new(&binary)
    }

    /// The module's imports, in order.
    pub fn imports(&self) -> &[Import] {
        &self.inner.imports
    }

    /// The module's exports, in order.
    pub fn exports(&self) -> &[Export] {
        &self.inner.exports
    }

    /// The signature of function `index` of the module's function index space.
    pub fn func_type(&self, index: u32) -> Option<&FuncType> {
        let ty = *self.inner.funcs.get(index as usize)?;
        self.inner.types.get(ty as usize)
    }

    /// The type of the export called `name`, if there is one.
    pub fn export_type(&self, name: &str) -> Option<ExternType> {
        let export = self.inner.exports.iter().find(|e| e.name == name)?;
        let inner = &self.inner;
        let defined = |index: u32, imported: u32| (index - imported) as usize;
        Some(match export.kind {
            ExportKind::Func => ExternType::Func(self.func_type(export.index)?.clone()),
            ExportKind::Table => match inner
                .imports_of(ExportKind::Table)
                .nth(export.index as usize)
            {
                Some(ty) => ty,
                None => {
                    ExternType::Table(inner.tables[defined(export.index, inner.imported_tables)])
                }
            },
            ExportKind::Memory => {
                match inner
                    .imports_of(ExportKind::Memory)
                    .nth(export.index as usize)
                {
                    Some(ty) => ty,
                    None => ExternType::Memory(
                        inner.memories[defined(export.index, inner.imported_memories)],
                    ),
                }
            }
            ExportKind::Global => {
                match inner
                    .imports_of(ExportKind::Global)
                    .nth(export.index as usize)
                {
                    Some(ty) => ty,
                    None => ExternType::Global(
                        inner.globals[defined(export.index, inner.imported_globals)].0,
                    ),
                }
            }
        })
    }

    /// The module's name from its name section.
    pub fn name(&self) -> Option<&str> {
        self.inner.names.module.as_deref()
    }
}

impl ModuleInner {
    fn imports_of(&self, kind: ExportKind) -> impl Iterator<Item = ExternType> + '_ {
        self.imports
            .iter()
            .filter(move |import| {
                matches!(
                    (&import.ty, kind),
                    (ExternType::Func(_), ExportKind::Func)
                        | (ExternType::Table(_), ExportKind::Table)
                        | (ExternType::Memory(_), ExportKind::Memory)
                        | (ExternType::Global(_), ExportKind::Global)
                )
            })
            .map(|import| import.ty.clone())
    }
}

/// Validates against the supported features; on failure, names a later feature
/// that would have made the module valid.
fn validate(bytes: &[u8]) -> Result<(), Error> {
    let Err(error) = Validator::new_with_features(supported_features()).validate_all(bytes) else {
        return Ok(());
    };
    for (feature, name) in unsupported_features() {
        let features = supported_features().union(feature);
        if Validator::new_with_features(features)
            .validate_all(bytes)
            .is_ok()
        {
            return Err(Error::Unsupported(name.to_string()));
        }
    }
    Err(Error::Invalid(error.to_string()))
}

fn val_type(ty: wasmparser::ValType) -> Result<ValType, Error> {
    Ok(match ty {
        wasmparser::ValType::I32 => ValType::I32,
        wasmparser::ValType::I64 => ValType::I64,
        wasmparser::ValType::F32 => ValType::F32,
        wasmparser::ValType::F64 => ValType::F64,
        wasmparser::ValType::V128 => return Err(Error::Unsupported("simd".into())),
        wasmparser::ValType::Ref(r) => ValType::from(ref_type(r)?),
    })
}

fn ref_type(ty: wasmparser::RefType) -> Result<RefType, Error> {
    if ty == wasmparser::RefType::FUNCREF {
        Ok(RefType::FuncRef)
    } else if ty == wasmparser::RefType::EXTERNREF {
        Ok(RefType::ExternRef)
    } else {
        Err(Error::Unsupported("function-references".into()))
    }
}

fn limits(initial: u64, maximum: Option<u64>) -> Limits {
    // Validation bounds 32-bit tables and memories to u32.
    Limits {
        minimum: initial as u32,
        maximum: maximum.map(|m| m as u32),
    }
}

fn table_type(ty: &wasmparser::TableType) -> Result<TableType, Error> {
    Ok(TableType {
        element: ref_type(ty.element_type)?,
        limits: limits(ty.initial, ty.maximum),
    })
}

fn memory_type(ty: &wasmparser::MemoryType) -> MemoryType {
    debug_assert!(ty.initial <= u64::from(WASM_PAGES_MAX));
    MemoryType {
        limits: limits(ty.initial, ty.maximum),
    }
}

fn global_type(ty: &wasmparser::GlobalType) -> Result<GlobalType, Error> {
    Ok(GlobalType {
        content: val_type(ty.content_type)?,
        mutable: ty.mutable,
    })
}

fn const_expr(expr: &wasmparser::ConstExpr<'_>) -> Result<ConstExpr, Error> {
    let mut reader = expr.get_operators_reader();
    let invalid = |e: wasmparser::BinaryReaderError| Error::Invalid(e.to_string());
    let value = match reader.read().map_err(invalid)? {
        Operator::I32Const { value } => ConstExpr::Cell(u64::from(value as u32)),
        Operator::I64Const { value } => ConstExpr::Cell(value as u64),
        Operator::F32Const { value } => ConstExpr::Cell(u64::from(value.bits())),
        Operator::F64Const { value } => ConstExpr::Cell(value.bits()),
        Operator::RefNull { .. } => ConstExpr::Cell(0),
        Operator::RefFunc { function_index } => ConstExpr::RefFunc(function_index),
        Operator::GlobalGet { global_index } => ConstExpr::GlobalGet(global_index),
        other => return Err(Error::Unsupported(format!("constant expression {other:?}"))),
    };
    match reader.read().map_err(invalid)? {
        Operator::End => Ok(value),
        _ => Err(Error::Unsupported("extended-const".into())),
    }
}

/// Parses a validated module. The outer error is a decoding error, the inner one
/// any other failure.
fn parse(bytes: &[u8]) -> Result<Result<ModuleInner, Error>, wasmparser::BinaryReaderError> {
    let mut module = ModuleInner {
        types: Vec::new(),
        imports: Vec::new(),
        funcs: Vec::new(),
        imported_funcs: 0,
        imported_tables: 0,
        imported_memories: 0,
        imported_globals: 0,
        tables: Vec::new(),
        memories: Vec::new(),
        globals: Vec::new(),
        exports: Vec::new(),
        start: None,
        elems: Vec::new(),
        datas: Vec::new(),
        code: Vec::new(),
        names: Names::default(),
    };
    let mut bodies = Vec::new();
    for payload in Parser::new(0).parse_all(bytes) {
        if let Err(error) = parse_payload(&mut module, &mut bodies, payload?)? {
            return Ok(Err(error));
        }
    }
    let env = ModuleEnv {
        types: &module.types,
        funcs: &module.funcs,
        imported_funcs: module.imported_funcs,
    };
    let mut code = Vec::with_capacity(bodies.len());
    for (i, body) in bodies.into_iter().enumerate() {
        let func_index = module.imported_funcs + i as u32;
        match translate_function(&env, func_index, &body)? {
            Ok(compiled) => code.push(compiled),
            Err(error) => return Ok(Err(error)),
        }
    }
    module.code = code;
    Ok(Ok(module))
}

type ParseResult = Result<Result<(), Error>, wasmparser::BinaryReaderError>;

fn parse_payload<'a>(
    module: &mut ModuleInner,
    bodies: &mut Vec<wasmparser::FunctionBody<'a>>,
    payload: Payload<'a>,
) -> ParseResult {
    macro_rules! check {
        ($e:expr) => {
            match $e {
                Ok(value) => value,
                Err(error) => return Ok(Err(error)),
            }
        };
    }
    match payload {
        Payload::TypeSection(reader) => {
            for group in reader {
                for sub in group?.into_types() {
                    let func = sub.unwrap_func();
                    let params: Vec<_> =
                        check!(func.params().iter().map(|t| val_type(*t)).collect());
                    let results: Vec<_> =
                        check!(func.results().iter().map(|t| val_type(*t)).collect());
                    module.types.push(FuncType::new(params, results));
                }
            }
        }
        Payload::ImportSection(reader) => {
            for import in reader.into_imports() {
                let import = import?;
                let ty = match import.ty {
                    wasmparser::TypeRef::Func(ty) | wasmparser::TypeRef::FuncExact(ty) => {
                        module.funcs.push(ty);
                        module.imported_funcs += 1;
                        ExternType::Func(module.types[ty as usize].clone())
                    }
                    wasmparser::TypeRef::Table(ty) => {
                        module.imported_tables += 1;
                        ExternType::Table(check!(table_type(&ty)))
                    }
                    wasmparser::TypeRef::Memory(ty) => {
                        module.imported_memories += 1;
                        ExternType::Memory(memory_type(&ty))
                    }
                    wasmparser::TypeRef::Global(ty) => {
                        module.imported_globals += 1;
                        ExternType::Global(check!(global_type(&ty)))
                    }
                    wasmparser::TypeRef::Tag(_) => {
                        return Ok(Err(Error::Unsupported("exception-handling".into())))
                    }
                };
                module.imports.push(Import {
                    module: import.module.to_string(),
                    name: import.name.to_string(),
                    ty,
                });
            }
        }
        Payload::FunctionSection(reader) => {
            for ty in reader {
                module.funcs.push(ty?);
            }
        }
        Payload::TableSection(reader) => {
            for table in reader {
                module.tables.push(check!(table_type(&table?.ty)));
            }
        }
        Payload::MemorySection(reader) => {
            for memory in reader {
                module.memories.push(memory_type(&memory?));
            }
        }
        Payload::GlobalSection(reader) => {
            for global in reader {
                let global = global?;
                let ty = check!(global_type(&global.ty));
                module
                    .globals
                    .push((ty, check!(const_expr(&global.init_expr))));
            }
        }
        Payload::ExportSection(reader) => {
            for export in reader {
                let export = export?;
                let kind = match export.kind {
                    wasmparser::ExternalKind::Func | wasmparser::ExternalKind::FuncExact => {
                        ExportKind::Func
                    }
                    wasmparser::ExternalKind::Table => ExportKind::Table,
                    wasmparser::ExternalKind::Memory => ExportKind::Memory,
                    wasmparser::ExternalKind::Global => ExportKind::Global,
                    wasmparser::ExternalKind::Tag => {
                        return Ok(Err(Error::Unsupported("exception-handling".into())))
                    }
                };
                module.exports.push(Export {
                    name: export.name.to_string(),
                    kind,
                    index: export.index,
                });
            }
        }
        Payload::StartSection { func, .. } => module.start = Some(func),
        Payload::ElementSection(reader) => {
            for elem in reader {
                module.elems.push(check!(elem_segment(elem?)?));
            }
        }
        Payload::DataSection(reader) => {
            for data in reader {
                let data = data?;
                let mode = match data.kind {
                    wasmparser::DataKind::Passive => SegmentMode::Passive,
                    wasmparser::DataKind::Active {
                        memory_index,
                        offset_expr,
                    } => SegmentMode::Active {
                        index: memory_index,
                        offset: check!(const_expr(&offset_expr)),
                    },
                };
                module.datas.push(DataSegment {
                    mode,
                    bytes: Arc::from(data.data),
                });
            }
        }
        Payload::CodeSectionEntry(body) => bodies.push(body),
        Payload::CustomSection(section) => {
            if let wasmparser::KnownCustom::Name(reader) = section.as_known() {
                // A malformed name section is ignored, as the spec requires.
                let _ = parse_names(&mut module.names, reader);
            }
        }
        _ => {}
    }
    Ok(Ok(()))
}

fn elem_segment(
    elem: wasmparser::Element<'_>,
) -> Result<Result<ElemSegment, Error>, wasmparser::BinaryReaderError> {
    let mode = match elem.kind {
        wasmparser::ElementKind::Passive => SegmentMode::Passive,
        wasmparser::ElementKind::Declared => SegmentMode::Declared,
        wasmparser::ElementKind::Active {
            table_index,
            offset_expr,
        } => match const_expr(&offset_expr) {
            Ok(offset) => SegmentMode::Active {
                index: table_index.unwrap_or(0),
                offset,
            },
            Err(error) => return Ok(Err(error)),
        },
    };
    let mut items = Vec::new();
    match elem.items {
        wasmparser::ElementItems::Functions(reader) => {
            for func in reader {
                items.push(ConstExpr::RefFunc(func?));
            }
        }
        wasmparser::ElementItems::Expressions(_, reader) => {
            for expr in reader {
                match const_expr(&expr?) {
                    Ok(item) => items.push(item),
                    Err(error) => return Ok(Err(error)),
                }
            }
        }
    }
    Ok(Ok(ElemSegment {
        mode,
        items: items.into(),
    }))
}

fn parse_names(
    names: &mut Names,
    reader: wasmparser::NameSectionReader<'_>,
) -> Result<(), wasmparser::BinaryReaderError> {
    for name in reader {
        match name? {
            wasmparser::Name::Module { name, .. } => names.module = Some(name.to_string()),
            wasmparser::Name::Function(map) => {
                for naming in map {
                    let naming = naming?;
                    names.funcs.insert(naming.index, naming.name.to_string());
                }
            }
            _ => {}
        }
    }
    Ok(())
}
