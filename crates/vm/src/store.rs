//! The store: every function, table, memory, global and instance, addressed by
//! plain-data handles.

use crate::{
    exec::{Execution, RunOutcome},
    module::{ConstExpr, ExportKind, ModuleInner, SegmentMode},
    translate::CompiledFunc,
    types::{ExternType, FuncType, GlobalType, Limits, MemoryType, TableType},
    Error, Func, Global, HostFuncId, Instance, Memory, Module, Table, Trap, Value,
};
use ferrite_core::{StackLimits, TrapCode, ValType};
use ferrite_heap::LinearMemory;
use std::{collections::HashMap, sync::Arc};

/// Engine configuration.
#[derive(Debug, Clone, Copy, Default)]
pub struct Config {
    /// Bounds of the call and value stacks of every execution.
    pub stack_limits: StackLimits,
}

/// Something a module can import or export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extern {
    Func(Func),
    Table(Table),
    Memory(Memory),
    Global(Global),
}

/// A canonical function signature, for `call_indirect` type checks across modules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct SigId(pub u32);

#[derive(Debug)]
pub(crate) enum FuncEntity {
    Wasm {
        sig: SigId,
        instance: Instance,
        module: Arc<ModuleInner>,
        /// Index into the module's translated code.
        code: u32,
    },
    Host {
        sig: SigId,
        id: HostFuncId,
    },
}

impl FuncEntity {
    pub(crate) fn sig(&self) -> SigId {
        match self {
            FuncEntity::Wasm { sig, .. } | FuncEntity::Host { sig, .. } => *sig,
        }
    }
}

#[derive(Debug)]
pub(crate) struct GlobalEntity {
    pub ty: GlobalType,
    pub cell: u64,
}

#[derive(Debug)]
pub(crate) struct TableEntity {
    pub ty: TableType,
    pub cells: Vec<u64>,
}

impl TableEntity {
    /// `table.grow`: the old size, or `None` past the maximum.
    pub(crate) fn grow(&mut self, delta: u32, init: u64) -> Option<u32> {
        let old = self.cells.len() as u32;
        let new = old.checked_add(delta)?;
        if self.ty.limits.maximum.is_some_and(|max| new > max) {
            return None;
        }
        // Bound the host allocation: tables are not paged.
        if new > TABLE_ELEMENTS_MAX {
            return None;
        }
        self.cells.resize(new as usize, init);
        Some(old)
    }
}

/// The most elements one table may hold (tables live in host memory).
pub const TABLE_ELEMENTS_MAX: u32 = 10_000_000;

#[derive(Debug)]
pub(crate) struct InstanceEntity {
    pub module: Arc<ModuleInner>,
    pub funcs: Vec<Func>,
    pub tables: Vec<Table>,
    pub memory: Option<Memory>,
    pub globals: Vec<Global>,
    pub types: Vec<SigId>,
    /// Store indices of the instance's element segments.
    pub elems: Vec<u32>,
    /// Store indices of the instance's data segments.
    pub datas: Vec<u32>,
}

/// Owns all runtime entities. Handles ([`Func`], [`Memory`], ...) index into it.
#[derive(Debug)]
pub struct Store {
    pub(crate) config: Config,
    pub(crate) funcs: Vec<FuncEntity>,
    pub(crate) instances: Vec<InstanceEntity>,
    pub(crate) memories: Vec<LinearMemory>,
    pub(crate) tables: Vec<TableEntity>,
    pub(crate) globals: Vec<GlobalEntity>,
    /// Element segments: their reference cells, emptied by `elem.drop`.
    pub(crate) elems: Vec<Box<[u64]>>,
    /// Data segments: their bytes, emptied by `data.drop`.
    pub(crate) datas: Vec<Arc<[u8]>>,
    sigs: Vec<FuncType>,
    sig_ids: HashMap<FuncType, SigId>,
}

/// Answers the host calls of an execution.
pub trait HostHandler {
    /// Runs host function `id` with `args`; returns its results.
    ///
    /// # Errors
    /// A trap to raise in the calling wasm code.
    fn call(
        &mut self,
        store: &mut Store,
        id: HostFuncId,
        args: &[Value],
    ) -> Result<Vec<Value>, Trap>;
}

impl<F> HostHandler for F
where
    F: FnMut(&mut Store, HostFuncId, &[Value]) -> Result<Vec<Value>, Trap>,
{
    fn call(
        &mut self,
        store: &mut Store,
        id: HostFuncId,
        args: &[Value],
    ) -> Result<Vec<Value>, Trap> {
        self(store, id, args)
    }
}

impl Store {
    /// An empty store.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            funcs: Vec::new(),
            instances: Vec::new(),
            memories: Vec::new(),
            tables: Vec::new(),
            globals: Vec::new(),
            elems: Vec::new(),
            datas: Vec::new(),
            sigs: Vec::new(),
            sig_ids: HashMap::new(),
        }
    }

    /// The store's configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    fn intern(&mut self, ty: &FuncType) -> SigId {
        if let Some(id) = self.sig_ids.get(ty) {
            return *id;
        }
        let id = SigId(self.sigs.len() as u32);
        self.sigs.push(ty.clone());
        self.sig_ids.insert(ty.clone(), id);
        id
    }

    /// Creates a host function. Calls to it stop the execution with
    /// [`RunOutcome::HostCall`] carrying `id`.
    pub fn alloc_host_func(&mut self, ty: &FuncType, id: HostFuncId) -> Func {
        let sig = self.intern(ty);
        self.funcs.push(FuncEntity::Host { sig, id });
        Func(self.funcs.len() as u32 - 1)
    }

    /// Creates a global holding `init`.
    ///
    /// # Errors
    /// If `init` does not have the global's type.
    pub fn alloc_global(&mut self, ty: GlobalType, init: Value) -> Result<Global, Error> {
        if init.ty() != ty.content {
            return Err(Error::usage(format!(
                "global of type {} given a {}",
                ty.content,
                init.ty()
            )));
        }
        self.globals.push(GlobalEntity {
            ty,
            cell: init.to_cell(),
        });
        Ok(Global(self.globals.len() as u32 - 1))
    }

    /// Creates a table of `ty.limits.minimum` elements of `init`.
    ///
    /// # Errors
    /// If `init` is not of the element type or the table is too large.
    pub fn alloc_table(&mut self, ty: TableType, init: Value) -> Result<Table, Error> {
        if init.ty() != ValType::from(ty.element) {
            return Err(Error::usage("table initializer of the wrong type"));
        }
        if ty.limits.minimum > TABLE_ELEMENTS_MAX {
            return Err(Error::Limit(format!(
                "table of {} elements",
                ty.limits.minimum
            )));
        }
        let cells = vec![init.to_cell(); ty.limits.minimum as usize];
        self.tables.push(TableEntity { ty, cells });
        Ok(Table(self.tables.len() as u32 - 1))
    }

    /// Creates a linear memory.
    ///
    /// # Errors
    /// If the limits exceed 4 GiB or the minimum exceeds the maximum.
    pub fn alloc_memory(&mut self, ty: MemoryType) -> Result<Memory, Error> {
        let memory = LinearMemory::new(ty.limits.minimum, ty.limits.maximum)
            .map_err(|e| Error::Limit(e.to_string()))?;
        self.memories.push(memory);
        Ok(Memory(self.memories.len() as u32 - 1))
    }

    /// The type of an extern as it is now (tables and memories report current sizes).
    pub fn extern_type(&self, item: Extern) -> ExternType {
        match item {
            Extern::Func(func) => ExternType::Func(self.func_type(func).clone()),
            Extern::Table(table) => {
                let entity = &self.tables[table.0 as usize];
                let mut ty = entity.ty;
                ty.limits.minimum = entity.cells.len() as u32;
                ExternType::Table(ty)
            }
            Extern::Memory(memory) => {
                let memory = &self.memories[memory.0 as usize];
                ExternType::Memory(MemoryType {
                    limits: Limits {
                        minimum: memory.size_wasm_pages(),
                        maximum: memory.maximum_wasm_pages(),
                    },
                })
            }
            Extern::Global(global) => ExternType::Global(self.globals[global.0 as usize].ty),
        }
    }

    /// The signature of a function.
    pub fn func_type(&self, func: Func) -> &FuncType {
        &self.sigs[self.funcs[func.0 as usize].sig().0 as usize]
    }

    /// The value of a global.
    pub fn global_get(&self, global: Global) -> Value {
        let entity = &self.globals[global.0 as usize];
        Value::from_cell(entity.ty.content, entity.cell)
    }

    /// Sets a mutable global.
    ///
    /// # Errors
    /// If the global is immutable or `value` has the wrong type.
    pub fn global_set(&mut self, global: Global, value: Value) -> Result<(), Error> {
        let entity = &mut self.globals[global.0 as usize];
        if !entity.ty.mutable || value.ty() != entity.ty.content {
            return Err(Error::usage("global is immutable or of another type"));
        }
        entity.cell = value.to_cell();
        Ok(())
    }

    /// The function with store index `index` (see [`Func::index`]), if any: for
    /// embedders that saved a handle as data.
    pub fn func_at(&self, index: u32) -> Option<Func> {
        ((index as usize) < self.funcs.len()).then_some(Func(index))
    }

    /// A linear memory.
    pub fn memory(&self, memory: Memory) -> &LinearMemory {
        &self.memories[memory.0 as usize]
    }

    /// A linear memory, for the host to read and write.
    pub fn memory_mut(&mut self, memory: Memory) -> &mut LinearMemory {
        &mut self.memories[memory.0 as usize]
    }

    /// The number of elements of a table.
    pub fn table_size(&self, table: Table) -> u32 {
        self.tables[table.0 as usize].cells.len() as u32
    }

    /// Element `index` of a table.
    pub fn table_get(&self, table: Table, index: u32) -> Option<Value> {
        let entity = &self.tables[table.0 as usize];
        let cell = *entity.cells.get(index as usize)?;
        Some(Value::from_cell(entity.ty.element.into(), cell))
    }

    /// The export `name` of an instance.
    pub fn get_export(&self, instance: Instance, name: &str) -> Option<Extern> {
        let entity = &self.instances[instance.0 as usize];
        let export = entity.module.exports.iter().find(|e| e.name == name)?;
        let index = export.index as usize;
        Some(match export.kind {
            ExportKind::Func => Extern::Func(entity.funcs[index]),
            ExportKind::Table => Extern::Table(entity.tables[index]),
            ExportKind::Memory => Extern::Memory(entity.memory?),
            ExportKind::Global => Extern::Global(entity.globals[index]),
        })
    }

    /// The start function of an instance, if its module has one.
    pub fn start_func(&self, instance: Instance) -> Option<Func> {
        let entity = &self.instances[instance.0 as usize];
        entity
            .module
            .start
            .map(|index| entity.funcs[index as usize])
    }

    /// The memory of an instance, if it has one.
    pub fn instance_memory(&self, instance: Instance) -> Option<Memory> {
        self.instances[instance.0 as usize].memory
    }

    /// Links `module` with `imports` (in the order of [`Module::imports`]), allocates
    /// its entities and initializes tables and memory from its active segments.
    /// The start function is not run: see [`Store::start_func`] and
    /// [`Store::instantiate_and_start`].
    ///
    /// # Errors
    /// [`Error::Link`] if an import is missing or has the wrong type;
    /// [`Error::Trap`] if a segment does not fit its table or memory (entities
    /// initialized before the failing segment keep their contents, as the spec says).
    pub fn instantiate(&mut self, module: &Module, imports: &[Extern]) -> Result<Instance, Error> {
        let instance = self.allocate_instance(module, imports)?;
        self.initialize_segments(instance)?;
        Ok(instance)
    }

    /// Like [`Store::instantiate`] but without running the active segments: for a
    /// store about to receive a checkpoint's [`StoreImage`](crate::StoreImage),
    /// whose tables, dropped segments and memory pages already hold their effects.
    ///
    /// # Errors
    /// [`Error::Link`] if an import is missing or has the wrong type.
    pub fn instantiate_for_restore(
        &mut self,
        module: &Module,
        imports: &[Extern],
    ) -> Result<Instance, Error> {
        self.allocate_instance(module, imports)
    }

    fn allocate_instance(
        &mut self,
        module: &Module,
        imports: &[Extern],
    ) -> Result<Instance, Error> {
        let inner = &module.inner;
        self.check_imports(inner, imports)?;
        let handle = Instance(self.instances.len() as u32);
        let mut entity = InstanceEntity {
            module: inner.clone(),
            funcs: Vec::new(),
            tables: Vec::new(),
            memory: None,
            globals: Vec::new(),
            types: inner.types.iter().map(|ty| self.intern(ty)).collect(),
            elems: Vec::new(),
            datas: Vec::new(),
        };
        for item in imports {
            match *item {
                Extern::Func(func) => entity.funcs.push(func),
                Extern::Table(table) => entity.tables.push(table),
                Extern::Memory(memory) => entity.memory = Some(memory),
                Extern::Global(global) => entity.globals.push(global),
            }
        }
        for (code, type_index) in inner.funcs[inner.imported_funcs as usize..]
            .iter()
            .enumerate()
        {
            let sig = entity.types[*type_index as usize];
            self.funcs.push(FuncEntity::Wasm {
                sig,
                instance: handle,
                module: inner.clone(),
                code: code as u32,
            });
            entity.funcs.push(Func(self.funcs.len() as u32 - 1));
        }
        for ty in &inner.tables {
            entity
                .tables
                .push(self.alloc_table(*ty, Value::default_of(ty.element.into()))?);
        }
        for ty in &inner.memories {
            entity.memory = Some(self.alloc_memory(*ty)?);
        }
        for (ty, init) in &inner.globals {
            let cell = self.eval_const(&entity, *init);
            self.globals.push(GlobalEntity { ty: *ty, cell });
            entity.globals.push(Global(self.globals.len() as u32 - 1));
        }
        for segment in &inner.elems {
            let cells = segment
                .items
                .iter()
                .map(|item| self.eval_const(&entity, *item))
                .collect();
            self.elems.push(cells);
            entity.elems.push(self.elems.len() as u32 - 1);
        }
        for segment in &inner.datas {
            self.datas.push(segment.bytes.clone());
            entity.datas.push(self.datas.len() as u32 - 1);
        }
        self.instances.push(entity);
        Ok(handle)
    }

    fn check_imports(&self, module: &ModuleInner, imports: &[Extern]) -> Result<(), Error> {
        if imports.len() != module.imports.len() {
            return Err(Error::link(format!(
                "module needs {} imports, {} given",
                module.imports.len(),
                imports.len()
            )));
        }
        for (import, item) in module.imports.iter().zip(imports) {
            let actual = self.extern_type(*item);
            let compatible = match (&import.ty, &actual) {
                (ExternType::Func(want), ExternType::Func(have)) => want == have,
                (ExternType::Global(want), ExternType::Global(have)) => want == have,
                (ExternType::Table(want), ExternType::Table(have)) => {
                    want.element == have.element && have.limits.matches(&want.limits)
                }
                (ExternType::Memory(want), ExternType::Memory(have)) => {
                    have.limits.matches(&want.limits)
                }
                _ => false,
            };
            if !compatible {
                return Err(Error::link(format!(
                    "incompatible import type for {}::{}: expected {}, got {}",
                    import.module,
                    import.name,
                    import.ty.kind(),
                    actual.kind()
                )));
            }
        }
        Ok(())
    }

    fn eval_const(&self, instance: &InstanceEntity, expr: ConstExpr) -> u64 {
        match expr {
            ConstExpr::Cell(cell) => cell,
            ConstExpr::RefFunc(index) => u64::from(instance.funcs[index as usize].0) + 1,
            ConstExpr::GlobalGet(index) => {
                self.globals[instance.globals[index as usize].0 as usize].cell
            }
        }
    }

    /// Runs the active element and data segments, then drops them (and declared ones).
    fn initialize_segments(&mut self, handle: Instance) -> Result<(), Error> {
        let entity = &self.instances[handle.0 as usize];
        let module = entity.module.clone();
        for (i, segment) in module.elems.iter().enumerate() {
            let elem = entity.elems[i] as usize;
            match segment.mode {
                SegmentMode::Passive => continue,
                SegmentMode::Declared => {}
                SegmentMode::Active { index, offset } => {
                    let offset = self.eval_const(entity, offset) as u32;
                    let table = &mut self.tables[entity.tables[index as usize].0 as usize];
                    let cells = &self.elems[elem];
                    let end = u64::from(offset) + cells.len() as u64;
                    if end > table.cells.len() as u64 {
                        return Err(Trap::new(TrapCode::TableOutOfBounds).into());
                    }
                    table.cells[offset as usize..end as usize].copy_from_slice(cells);
                }
            }
            self.elems[elem] = Box::new([]);
        }
        for (i, segment) in module.datas.iter().enumerate() {
            let data = entity.datas[i] as usize;
            if let SegmentMode::Active { offset, .. } = segment.mode {
                let offset = self.eval_const(entity, offset) as u32;
                let memory = entity
                    .memory
                    .expect("validated: active data needs a memory");
                self.memories[memory.0 as usize]
                    .write(u64::from(offset), &self.datas[data])
                    .map_err(|_| Trap::new(TrapCode::MemoryOutOfBounds))?;
                self.datas[data] = Arc::new([]);
            }
        }
        Ok(())
    }

    /// Instantiates `module` and runs its start function, answering host calls with
    /// `host`.
    ///
    /// # Errors
    /// As [`Store::instantiate`], and a trap of the start function.
    pub fn instantiate_and_start(
        &mut self,
        module: &Module,
        imports: &[Extern],
        host: &mut dyn HostHandler,
    ) -> Result<Instance, Error> {
        let instance = self.instantiate(module, imports)?;
        if let Some(start) = self.start_func(instance) {
            self.invoke(start, &[], host)?;
        }
        Ok(instance)
    }

    /// Calls `func` with `args` to completion, answering host calls with `host`.
    ///
    /// # Errors
    /// [`Error::Usage`] for arguments of the wrong number or type, [`Error::Trap`]
    /// if execution traps.
    pub fn invoke(
        &mut self,
        func: Func,
        args: &[Value],
        host: &mut dyn HostHandler,
    ) -> Result<Vec<Value>, Error> {
        let mut execution = Execution::new(self, func, args)?;
        loop {
            match execution.run(self, u64::MAX)? {
                RunOutcome::Finished(results) => return Ok(results),
                RunOutcome::OutOfBudget | RunOutcome::Interrupted => {}
                RunOutcome::HostCall { id, args } => {
                    let results = host.call(self, id, &args)?;
                    execution.resume_host(self, &results)?;
                    if let Some(results) = execution.host_results(self) {
                        return Ok(results);
                    }
                }
            }
        }
    }

    pub(crate) fn compiled(&self, func: Func) -> Option<(&CompiledFunc, Instance)> {
        match &self.funcs[func.0 as usize] {
            FuncEntity::Wasm {
                module,
                code,
                instance,
                ..
            } => Some((&module.code[*code as usize], *instance)),
            FuncEntity::Host { .. } => None,
        }
    }
}
