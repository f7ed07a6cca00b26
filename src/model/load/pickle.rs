//! A bounded pickle interpreter for PyTorch state dicts, safe by construction.
//!
//! Like PyTorch's `weights_only` unpickler, every global (`GLOBAL`, `STACK_GLOBAL`, `INST`) is
//! vetted against an allow-list the moment it is read, so nothing a file names can ever be reached
//! unless it is a tensor rebuild function, a storage type or `collections.OrderedDict`; calls are
//! interpreted by this module (never executed) and only build tensors and plain containers.
//! Memo entries, nesting depth, container cells and the logical size of shared sub-objects are
//! capped, so a few hundred hostile bytes can neither exhaust memory nor overflow the stack.
use std::collections::HashMap;
use std::rc::Rc;

/// Deepest container nesting accepted (state dicts nest a handful of levels).
pub const MAX_DEPTH: u32 = 256;
/// Most memo entries.
pub const MAX_MEMO: usize = 1 << 22;
/// Most container slots allocated in total (each a few words), including copies.
pub const MAX_CELLS: u64 = 1 << 22;
/// Largest logical size of one value, counting shared sub-objects every time they occur.
pub const MAX_WEIGHT: u64 = 1 << 22;

/// Why a pickle was not interpreted.
#[derive(Debug, Clone, PartialEq)]
pub enum PickleError {
    /// The pickle asks for something outside the allow-list: never run, never built.
    Refused(String),
    /// Corrupt, truncated, or over a cap.
    Malformed(String),
}

/// Element types of PyTorch storages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageKind {
    /// `DoubleStorage`.
    F64,
    /// `FloatStorage`.
    F32,
    /// `HalfStorage`.
    F16,
    /// `BFloat16Storage`.
    BF16,
    /// `LongStorage`.
    I64,
    /// `IntStorage`.
    I32,
    /// `ShortStorage`.
    I16,
    /// `CharStorage`.
    I8,
    /// `ByteStorage`.
    U8,
    /// `BoolStorage`.
    Bool,
}

impl StorageKind {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            StorageKind::F64 | StorageKind::I64 => 8,
            StorageKind::F32 | StorageKind::I32 => 4,
            StorageKind::F16 | StorageKind::BF16 | StorageKind::I16 => 2,
            StorageKind::I8 | StorageKind::U8 | StorageKind::Bool => 1,
        }
    }
}

/// The only globals a checkpoint may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Global {
    /// `collections.OrderedDict`.
    OrderedDict,
    /// `torch._utils._rebuild_tensor_v2`.
    RebuildTensorV2,
    /// `torch._utils._rebuild_tensor`.
    RebuildTensor,
    /// `torch._utils._rebuild_parameter`.
    RebuildParameter,
    /// `torch._utils._rebuild_parameter_with_state`.
    RebuildParameterWithState,
    /// `torch._tensor._rebuild_from_type_v2`.
    RebuildFromTypeV2,
    /// `torch.Tensor` / `torch.nn.parameter.Parameter`: only as the type argument of
    /// `_rebuild_from_type_v2`.
    TensorType,
    /// A `torch.*Storage` type.
    Storage(StorageKind),
}

fn vet(module: &str, name: &str) -> Result<Global, PickleError> {
    use StorageKind::*;
    let g = match (module, name) {
        ("collections", "OrderedDict") => Global::OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
        ("torch._utils", "_rebuild_tensor") => Global::RebuildTensor,
        ("torch._utils", "_rebuild_parameter") => Global::RebuildParameter,
        ("torch._utils", "_rebuild_parameter_with_state") => Global::RebuildParameterWithState,
        ("torch._tensor", "_rebuild_from_type_v2") => Global::RebuildFromTypeV2,
        ("torch", "Tensor") | ("torch.nn.parameter", "Parameter") => Global::TensorType,
        ("torch", storage) => Global::Storage(match storage {
            "DoubleStorage" => F64,
            "FloatStorage" => F32,
            "HalfStorage" => F16,
            "BFloat16Storage" => BF16,
            "LongStorage" => I64,
            "IntStorage" => I32,
            "ShortStorage" => I16,
            "CharStorage" => I8,
            "ByteStorage" => U8,
            "BoolStorage" => Bool,
            _ => return Err(refused_global(module, name)),
        }),
        _ => return Err(refused_global(module, name)),
    };
    Ok(g)
}

fn refused_global(module: &str, name: &str) -> PickleError {
    PickleError::Refused(format!(
        "it references `{}.{}` (only tensors, storages and plain containers are allowed)",
        printable(module),
        printable(name)
    ))
}

/// A name from the file, safe to print on one line.
fn printable(s: &str) -> String {
    s.chars()
        .take(200)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// A storage a tensor views: its zip entry key, element type and length in elements.
#[derive(Debug, PartialEq)]
pub struct StorageRef {
    /// Name of the storage's file in the checkpoint zip's `data/` folder.
    pub key: String,
    /// Element type.
    pub kind: StorageKind,
    /// Length in elements.
    pub numel: u64,
}

/// A tensor: a strided view into a storage, checked to lie inside it.
#[derive(Debug, PartialEq)]
pub struct TensorRef {
    /// The storage viewed.
    pub storage: Rc<StorageRef>,
    /// First element, in elements from the storage's start.
    pub offset: u64,
    /// Size of each dimension.
    pub shape: Vec<usize>,
    /// Step in elements along each dimension.
    pub stride: Vec<usize>,
}

impl TensorRef {
    /// Elements in the view (the product of `shape`).
    pub fn numel(&self) -> u64 {
        self.shape.iter().map(|&d| d as u64).product()
    }
}

/// A container's items (dicts store keys and values alternately), with its logical size and depth.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// The items (dicts: key, value, key, value, ...).
    pub items: Vec<Value>,
    weight: u64,
    depth: u32,
}

/// What a vetted pickle can hold.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// Python `None`.
    None,
    /// `True` or `False`.
    Bool(bool),
    /// An integer that fits 64 bits.
    Int(i64),
    /// A Python float (double precision).
    Float(f64),
    /// A text string (UTF-8).
    Str(Rc<str>),
    /// A byte string (`bytes`).
    Bytes(Rc<[u8]>),
    /// A tuple, items in [`Node::items`] (a call's arguments come as one).
    Tuple(Rc<Node>),
    /// A list, items in [`Node::items`].
    List(Rc<Node>),
    /// A dict or `OrderedDict`: keys and values alternate in [`Node::items`].
    Dict(Rc<Node>),
    /// A set or frozenset.
    Set(Rc<Node>),
    /// An allowed global, not yet called.
    Global(Global),
    /// A storage named by a persistent id.
    Storage(Rc<StorageRef>),
    /// A rebuilt tensor.
    Tensor(Rc<TensorRef>),
}

impl Value {
    fn weight(&self) -> u64 {
        match self {
            Value::Tuple(n) | Value::List(n) | Value::Dict(n) | Value::Set(n) => n.weight,
            _ => 1,
        }
    }
    fn depth(&self) -> u32 {
        match self {
            Value::Tuple(n) | Value::List(n) | Value::Dict(n) | Value::Set(n) => n.depth,
            _ => 0,
        }
    }
    fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Set(_) => "set",
            Value::Global(_) => "global",
            Value::Storage(_) => "storage",
            Value::Tensor(_) => "tensor",
        }
    }
    /// The (key, value) pairs of a dict.
    pub fn dict_pairs(&self) -> Option<impl Iterator<Item = (&Value, &Value)>> {
        match self {
            Value::Dict(n) => Some(n.items.chunks_exact(2).map(|kv| (&kv[0], &kv[1]))),
            _ => None,
        }
    }
    /// The value stored under a string key of a dict (the last one, as Python keeps).
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.dict_pairs()?
            .filter(|(k, _)| matches!(k, Value::Str(s) if &**s == key))
            .map(|(_, v)| v)
            .last()
    }
}

fn malformed(msg: impl Into<String>) -> PickleError {
    PickleError::Malformed(msg.into())
}

/// The interpreter's state.
struct Vm<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    cells: u64,
}

impl<'a> Vm<'a> {
    fn take(&mut self, n: u64) -> Result<&'a [u8], PickleError> {
        let left = (self.data.len() - self.pos) as u64;
        if n > left {
            return Err(malformed(format!(
                "truncated: {n} bytes wanted at byte {}, {left} left",
                self.pos
            )));
        }
        let s = &self.data[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }
    fn byte(&mut self) -> Result<u8, PickleError> {
        Ok(self.take(1)?[0])
    }
    fn uint(&mut self, n: usize) -> Result<u64, PickleError> {
        let b = self.take(n as u64)?;
        Ok(b.iter().rev().fold(0u64, |acc, &x| (acc << 8) | x as u64))
    }
    fn line(&mut self) -> Result<&'a [u8], PickleError> {
        let rest = &self.data[self.pos..];
        let n = rest.iter().position(|&b| b == b'\n').ok_or_else(|| {
            malformed(format!("truncated: unterminated line at byte {}", self.pos))
        })?;
        self.pos += n + 1;
        Ok(&rest[..n])
    }
    fn line_str(&mut self) -> Result<&'a str, PickleError> {
        std::str::from_utf8(self.line()?).map_err(|_| malformed("non-UTF-8 text argument"))
    }

    fn cell(&mut self, n: u64) -> Result<(), PickleError> {
        self.cells += n;
        if self.cells > MAX_CELLS {
            return Err(malformed(format!(
                "more than {MAX_CELLS} container items built (memo or copy bomb)"
            )));
        }
        Ok(())
    }

    fn frame_start(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }
    fn push(&mut self, v: Value) {
        self.stack.push(v);
    }
    fn pop(&mut self) -> Result<Value, PickleError> {
        if self.stack.len() <= self.frame_start() {
            return Err(malformed(format!("stack underflow at byte {}", self.pos)));
        }
        Ok(self.stack.pop().expect("checked non-empty"))
    }
    fn top(&mut self) -> Result<&mut Value, PickleError> {
        if self.stack.len() <= self.frame_start() {
            return Err(malformed(format!("stack underflow at byte {}", self.pos)));
        }
        Ok(self.stack.last_mut().expect("checked non-empty"))
    }
    fn pop_mark(&mut self) -> Result<Vec<Value>, PickleError> {
        let m = self
            .marks
            .pop()
            .ok_or_else(|| malformed(format!("no MARK to pop at byte {}", self.pos)))?;
        Ok(self.stack.split_off(m))
    }

    fn node(&mut self, items: Vec<Value>) -> Result<Rc<Node>, PickleError> {
        self.cell(items.len() as u64)?;
        let mut n = Node {
            items: Vec::new(),
            weight: 1,
            depth: 1,
        };
        for v in &items {
            grow(&mut n, v)?;
        }
        n.items = items;
        Ok(Rc::new(n))
    }

    /// Adds items to the container on top of the stack (copy-on-write when it is shared).
    fn extend_top(&mut self, items: Vec<Value>, want: &str) -> Result<(), PickleError> {
        let pos = self.pos;
        let mut cost = items.len() as u64;
        let top = self.top()?;
        let node = match (want, top) {
            ("list", Value::List(n)) | ("dict", Value::Dict(n)) | ("set", Value::Set(n)) => n,
            (_, other) => {
                return Err(malformed(format!(
                    "{want} item added to a {} at byte {pos}",
                    other.kind()
                )))
            }
        };
        if Rc::strong_count(node) > 1 {
            cost += node.items.len() as u64;
        }
        let node = Rc::make_mut(node);
        for v in &items {
            grow(node, v)?;
        }
        node.items.extend(items);
        self.cell(cost)
    }

    fn memo_put(&mut self, idx: u32) -> Result<(), PickleError> {
        let v = self.top()?.clone();
        if self.memo.len() >= MAX_MEMO && !self.memo.contains_key(&idx) {
            return Err(malformed(format!("more than {MAX_MEMO} memo entries")));
        }
        self.cell(1)?;
        self.memo.insert(idx, v);
        Ok(())
    }
    fn memo_get(&mut self, idx: u64) -> Result<(), PickleError> {
        let v = u32::try_from(idx)
            .ok()
            .and_then(|i| self.memo.get(&i))
            .cloned()
            .ok_or_else(|| malformed(format!("memo entry {idx} read before it was written")))?;
        self.push(v);
        Ok(())
    }

    fn string(&mut self, n: u64) -> Result<Value, PickleError> {
        let b = self.take(n)?;
        Ok(Value::Str(Rc::from(String::from_utf8_lossy(b).as_ref())))
    }
    fn latin1(&mut self, n: u64) -> Result<Value, PickleError> {
        let b = self.take(n)?;
        Ok(Value::Str(
            b.iter().map(|&c| c as char).collect::<String>().into(),
        ))
    }
    fn bytes(&mut self, n: u64) -> Result<Value, PickleError> {
        Ok(Value::Bytes(Rc::from(self.take(n)?)))
    }

    fn run(mut self) -> Result<Value, PickleError> {
        loop {
            let at = self.pos;
            let op = self.byte()?;
            match op {
                0x80 => {
                    let p = self.byte()?;
                    if p > 5 {
                        return Err(malformed(format!("unsupported pickle protocol {p}")));
                    }
                }
                0x95 => {
                    let n = self.uint(8)?;
                    if n > (self.data.len() - self.pos) as u64 {
                        return Err(malformed(format!("FRAME of {n} bytes past the end")));
                    }
                }
                b'.' => return self.pop(),
                b'(' => self.marks.push(self.stack.len()),
                b'0' => {
                    if self.stack.len() > self.frame_start() {
                        self.stack.pop();
                    } else {
                        self.pop_mark()?;
                    }
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    self.push(v);
                }
                b'N' => self.push(Value::None),
                0x88 => self.push(Value::Bool(true)),
                0x89 => self.push(Value::Bool(false)),
                b'J' => {
                    let v = self.uint(4)? as u32 as i32;
                    self.push(Value::Int(v as i64));
                }
                b'K' => {
                    let v = self.uint(1)?;
                    self.push(Value::Int(v as i64));
                }
                b'M' => {
                    let v = self.uint(2)?;
                    self.push(Value::Int(v as i64));
                }
                0x8a | 0x8b => {
                    let n = if op == 0x8a {
                        self.uint(1)?
                    } else {
                        self.uint(4)?
                    };
                    if n > 8 {
                        return Err(malformed(format!(
                            "integer of {n} bytes at byte {at} (at most 8 supported)"
                        )));
                    }
                    let b = self.take(n)?;
                    let mut v: i64 = 0;
                    for (i, &x) in b.iter().enumerate() {
                        v |= (x as i64) << (8 * i);
                    }
                    if (1..8).contains(&n) && b[n as usize - 1] & 0x80 != 0 {
                        v -= 1i64 << (8 * n);
                    }
                    self.push(Value::Int(v));
                }
                b'I' => {
                    let s = self.line_str()?;
                    let v = match s {
                        "00" => Value::Bool(false),
                        "01" => Value::Bool(true),
                        _ => Value::Int(
                            s.parse()
                                .map_err(|_| malformed(format!("bad INT {:?}", printable(s))))?,
                        ),
                    };
                    self.push(v);
                }
                b'L' => {
                    let s = self.line_str()?;
                    let v = s
                        .trim_end_matches('L')
                        .parse()
                        .map_err(|_| malformed(format!("bad LONG {:?}", printable(s))))?;
                    self.push(Value::Int(v));
                }
                b'G' => {
                    let b = self.take(8)?;
                    let v = f64::from_be_bytes(b.try_into().expect("8 bytes"));
                    self.push(Value::Float(v));
                }
                b'F' => {
                    let s = self.line_str()?;
                    let v = s
                        .parse()
                        .map_err(|_| malformed(format!("bad FLOAT {:?}", printable(s))))?;
                    self.push(Value::Float(v));
                }
                b'X' | 0x8c | 0x8d => {
                    let n = match op {
                        b'X' => self.uint(4)?,
                        0x8c => self.uint(1)?,
                        _ => self.uint(8)?,
                    };
                    let v = self.string(n)?;
                    self.push(v);
                }
                b'V' => {
                    let line = self.line()?;
                    self.push(Value::Str(raw_unicode_escape(line).into()));
                }
                b'T' | b'U' => {
                    let n = if op == b'T' {
                        self.uint(4)?
                    } else {
                        self.uint(1)?
                    };
                    let v = self.latin1(n)?;
                    self.push(v);
                }
                b'B' | b'C' | 0x8e | 0x96 => {
                    let n = match op {
                        b'B' => self.uint(4)?,
                        b'C' => self.uint(1)?,
                        _ => self.uint(8)?,
                    };
                    let v = self.bytes(n)?;
                    self.push(v);
                }
                b')' => {
                    let n = self.node(Vec::new())?;
                    self.push(Value::Tuple(n));
                }
                b't' => {
                    let items = self.pop_mark()?;
                    let n = self.node(items)?;
                    self.push(Value::Tuple(n));
                }
                0x85..=0x87 => {
                    let k = (op - 0x84) as usize;
                    let mut items = Vec::with_capacity(k);
                    for _ in 0..k {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    let n = self.node(items)?;
                    self.push(Value::Tuple(n));
                }
                b']' => {
                    let n = self.node(Vec::new())?;
                    self.push(Value::List(n));
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    let n = self.node(items)?;
                    self.push(Value::List(n));
                }
                b'a' => {
                    let v = self.pop()?;
                    self.extend_top(vec![v], "list")?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.extend_top(items, "list")?;
                }
                b'}' => {
                    let n = self.node(Vec::new())?;
                    self.push(Value::Dict(n));
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    if items.len() % 2 != 0 {
                        return Err(malformed(format!("DICT with an odd item count at {at}")));
                    }
                    let n = self.node(items)?;
                    self.push(Value::Dict(n));
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.extend_top(vec![k, v], "dict")?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    if items.len() % 2 != 0 {
                        return Err(malformed(format!(
                            "SETITEMS with an odd item count at {at}"
                        )));
                    }
                    self.extend_top(items, "dict")?;
                }
                0x8f => {
                    let n = self.node(Vec::new())?;
                    self.push(Value::Set(n));
                }
                0x90 => {
                    let items = self.pop_mark()?;
                    self.extend_top(items, "set")?;
                }
                0x91 => {
                    let items = self.pop_mark()?;
                    let n = self.node(items)?;
                    self.push(Value::Set(n));
                }
                b'c' => {
                    let module = self.line_str()?;
                    let name = self.line_str()?;
                    self.push(Value::Global(vet(module, name)?));
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (&module, &name) {
                        (Value::Str(m), Value::Str(n)) => {
                            let g = vet(m, n)?;
                            self.push(Value::Global(g));
                        }
                        _ => {
                            return Err(malformed(format!(
                                "STACK_GLOBAL of a {} and a {}",
                                module.kind(),
                                name.kind()
                            )))
                        }
                    }
                }
                b'i' => {
                    let module = self.line_str()?;
                    let name = self.line_str()?;
                    let g = vet(module, name)?;
                    let args = self.pop_mark()?;
                    let v = self.call(g, args)?;
                    self.push(v);
                }
                b'o' => {
                    let mut items = self.pop_mark()?;
                    if items.is_empty() {
                        return Err(malformed("OBJ without a class"));
                    }
                    let cls = items.remove(0);
                    let v = self.call_value(cls, items)?;
                    self.push(v);
                }
                b'R' | 0x81 => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let args = tuple_items(args, "call arguments")?;
                    let v = self.call_value(callable, args)?;
                    self.push(v);
                }
                0x92 => {
                    let kwargs = self.pop()?;
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    if !matches!(&kwargs, Value::Dict(n) if n.items.is_empty()) {
                        return Err(malformed("NEWOBJ_EX with keyword arguments"));
                    }
                    let args = tuple_items(args, "call arguments")?;
                    let v = self.call_value(cls, args)?;
                    self.push(v);
                }
                b'b' => {
                    // The state of an OrderedDict (its `_metadata`) or a tensor is plain, vetted
                    // data that a state dict does not need: dropped.
                    let _state = self.pop()?;
                    let top = self.top()?;
                    if !matches!(top, Value::Dict(_) | Value::Tensor(_)) {
                        return Err(malformed(format!("BUILD on a {} at byte {at}", top.kind())));
                    }
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let v = persistent_load(pid)?;
                    self.push(v);
                }
                b'P' => {
                    return Err(malformed(
                        "text persistent id (PERSID): not a PyTorch zip checkpoint",
                    ))
                }
                b'g' => {
                    let s = self.line_str()?;
                    let i = s
                        .parse()
                        .map_err(|_| malformed(format!("bad GET {:?}", printable(s))))?;
                    self.memo_get(i)?;
                }
                b'h' => {
                    let i = self.uint(1)?;
                    self.memo_get(i)?;
                }
                b'j' => {
                    let i = self.uint(4)?;
                    self.memo_get(i)?;
                }
                b'p' => {
                    let s = self.line_str()?;
                    let i = s
                        .parse()
                        .map_err(|_| malformed(format!("bad PUT {:?}", printable(s))))?;
                    self.memo_put(i)?;
                }
                b'q' => {
                    let i = self.uint(1)? as u32;
                    self.memo_put(i)?;
                }
                b'r' => {
                    let i = self.uint(4)? as u32;
                    self.memo_put(i)?;
                }
                0x94 => {
                    let i = u32::try_from(self.memo.len())
                        .map_err(|_| malformed("memo index overflow"))?;
                    self.memo_put(i)?;
                }
                0x82..=0x84 | 0x97 | 0x98 | b'S' => {
                    let name = match op {
                        0x82 => "EXT1",
                        0x83 => "EXT2",
                        0x84 => "EXT4",
                        0x97 => "NEXT_BUFFER",
                        0x98 => "READONLY_BUFFER",
                        _ => "STRING",
                    };
                    return Err(PickleError::Refused(format!(
                        "pickle opcode {name} (0x{op:02x}) at byte {at} is not allowed in a checkpoint"
                    )));
                }
                _ => {
                    return Err(PickleError::Refused(format!(
                        "unknown pickle opcode 0x{op:02x} at byte {at}"
                    )))
                }
            }
        }
    }

    fn call_value(&mut self, callable: Value, args: Vec<Value>) -> Result<Value, PickleError> {
        match callable {
            Value::Global(g) => self.call(g, args),
            other => Err(malformed(format!("call of a {}", other.kind()))),
        }
    }

    /// Interprets an allowed global applied to `args`.
    fn call(&mut self, g: Global, args: Vec<Value>) -> Result<Value, PickleError> {
        match g {
            Global::OrderedDict => {
                let mut items = Vec::new();
                match args.as_slice() {
                    [] => {}
                    [Value::List(n) | Value::Tuple(n)] => {
                        for pair in &n.items {
                            match pair {
                                Value::Tuple(p) | Value::List(p) if p.items.len() == 2 => {
                                    items.extend(p.items.iter().cloned())
                                }
                                _ => return Err(malformed("OrderedDict item is not a pair")),
                            }
                        }
                    }
                    [Value::Dict(n)] => items.extend(n.items.iter().cloned()),
                    _ => return Err(malformed("OrderedDict with unexpected arguments")),
                }
                Ok(Value::Dict(self.node(items)?))
            }
            Global::RebuildTensorV2 | Global::RebuildTensor => {
                let n = if g == Global::RebuildTensor {
                    4..=4
                } else {
                    6..=7
                };
                if !n.contains(&args.len()) {
                    return Err(malformed(format!(
                        "tensor rebuild with {} arguments",
                        args.len()
                    )));
                }
                let storage = match &args[0] {
                    Value::Storage(s) => s.clone(),
                    other => return Err(malformed(format!("tensor of a {}", other.kind()))),
                };
                let offset = match args[1] {
                    Value::Int(o) if o >= 0 => o as u64,
                    _ => return Err(malformed("tensor storage offset is not a natural number")),
                };
                let shape = naturals(&args[2], "tensor size")?;
                let stride = naturals(&args[3], "tensor stride")?;
                Ok(Value::Tensor(Rc::new(tensor_ref(
                    storage, offset, shape, stride,
                )?)))
            }
            Global::RebuildParameter | Global::RebuildParameterWithState => {
                match args.into_iter().next() {
                    Some(t @ Value::Tensor(_)) => Ok(t),
                    _ => Err(malformed("parameter of something other than a tensor")),
                }
            }
            Global::RebuildFromTypeV2 => {
                let mut it = args.into_iter();
                let (func, ty, inner) = (it.next(), it.next(), it.next());
                match (func, ty) {
                    (
                        Some(Value::Global(
                            f @ (Global::RebuildTensorV2
                            | Global::RebuildTensor
                            | Global::RebuildParameter),
                        )),
                        Some(Value::Global(Global::TensorType)),
                    ) => {
                        let inner = tuple_items(
                            inner.ok_or_else(|| malformed("missing arguments"))?,
                            "rebuild arguments",
                        )?;
                        self.call(f, inner)
                    }
                    _ => Err(malformed(
                        "_rebuild_from_type_v2 of something other than a plain tensor",
                    )),
                }
            }
            Global::TensorType | Global::Storage(_) => {
                Err(malformed(format!("{g:?} called directly")))
            }
        }
    }
}

fn grow(n: &mut Node, v: &Value) -> Result<(), PickleError> {
    n.weight = n.weight.saturating_add(v.weight());
    n.depth = n.depth.max(v.depth() + 1);
    if n.weight > MAX_WEIGHT {
        return Err(malformed(format!(
            "a value of more than {MAX_WEIGHT} items (shared sub-objects counted each time)"
        )));
    }
    if n.depth > MAX_DEPTH {
        return Err(malformed(format!(
            "containers nested more than {MAX_DEPTH} levels deep"
        )));
    }
    Ok(())
}

fn tuple_items(v: Value, what: &str) -> Result<Vec<Value>, PickleError> {
    match v {
        Value::Tuple(n) => Ok(Rc::try_unwrap(n)
            .map(|n| n.items)
            .unwrap_or_else(|n| n.items.clone())),
        other => Err(malformed(format!(
            "{what} are a {}, not a tuple",
            other.kind()
        ))),
    }
}

fn naturals(v: &Value, what: &str) -> Result<Vec<usize>, PickleError> {
    match v {
        Value::Tuple(n) | Value::List(n) if n.items.len() <= 64 => n
            .items
            .iter()
            .map(|x| match x {
                Value::Int(i) if *i >= 0 => Ok(*i as usize),
                _ => Err(malformed(format!("{what} has a non-natural entry"))),
            })
            .collect(),
        _ => Err(malformed(format!(
            "{what} is not a short tuple of integers"
        ))),
    }
}

/// Checks that every element of the view lies inside the storage.
fn tensor_ref(
    storage: Rc<StorageRef>,
    offset: u64,
    shape: Vec<usize>,
    stride: Vec<usize>,
) -> Result<TensorRef, PickleError> {
    if shape.len() != stride.len() {
        return Err(malformed("tensor size and stride differ in length"));
    }
    let mut numel: u64 = 1;
    let mut last: u64 = offset;
    for (&d, &s) in shape.iter().zip(&stride) {
        numel = numel
            .checked_mul(d as u64)
            .ok_or_else(|| malformed("tensor element count overflows"))?;
        if d > 0 {
            last = (d as u64 - 1)
                .checked_mul(s as u64)
                .and_then(|x| x.checked_add(last))
                .ok_or_else(|| malformed("tensor extent overflows"))?;
        }
    }
    if numel > 0 && last >= storage.numel {
        return Err(malformed(format!(
            "tensor view {shape:?} (stride {stride:?}, offset {offset}) reaches element {last} of a storage of {}",
            storage.numel
        )));
    }
    Ok(TensorRef {
        storage,
        offset,
        shape,
        stride,
    })
}

/// `('storage', StorageType, key, location, numel)`, PyTorch's persistent id of a storage.
fn persistent_load(pid: Value) -> Result<Value, PickleError> {
    let items = tuple_items(pid, "persistent id")?;
    match items.as_slice() {
        [Value::Str(tag), Value::Global(Global::Storage(kind)), Value::Str(key), Value::Str(_location), Value::Int(numel)]
            if &**tag == "storage" && *numel >= 0 =>
        {
            if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(malformed(format!("storage key {:?}", printable(key))));
            }
            Ok(Value::Storage(Rc::new(StorageRef {
                key: key.to_string(),
                kind: *kind,
                numel: *numel as u64,
            })))
        }
        _ => Err(malformed(
            "persistent id is not ('storage', <storage type>, key, location, size)",
        )),
    }
}

/// Protocol 0's `raw-unicode-escape`: bytes are Latin-1 code points, `\uXXXX` / `\UXXXXXXXX` escapes.
fn raw_unicode_escape(b: &[u8]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        let width = match (b[i], b.get(i + 1)) {
            (b'\\', Some(b'u')) => 4,
            (b'\\', Some(b'U')) => 8,
            _ => 0,
        };
        let escaped = (width > 0)
            .then(|| b.get(i + 2..i + 2 + width))
            .flatten()
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .and_then(char::from_u32);
        match escaped {
            Some(c) => {
                out.push(c);
                i += 2 + width;
            }
            None => {
                out.push(b[i] as char);
                i += 1;
            }
        }
    }
    out
}

/// Interprets a pickle: the object it returns, or why it was refused.
pub fn unpickle(data: &[u8]) -> Result<Value, PickleError> {
    Vm {
        data,
        pos: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        cells: 0,
    }
    .run()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(data: &[u8]) -> String {
        match unpickle(data) {
            Err(PickleError::Refused(m)) => m,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
    fn malformed_msg(data: &[u8]) -> String {
        match unpickle(data) {
            Err(PickleError::Malformed(m)) => m,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn plain_data_round_trips() {
        // {'a': [1, -2, 3.5, None, True], 'b': (b'xy', 'é')}, protocol 2.
        let mut p = b"\x80\x02}q\x00(X\x01\x00\x00\x00a]q\x01(K\x01J\xfe\xff\xff\xffG@\x0c\x00\x00\x00\x00\x00\x00N\x88eX\x01\x00\x00\x00bC\x02xy".to_vec();
        p.extend(b"X\x02\x00\x00\x00\xc3\xa9\x86u.");
        let v = unpickle(&p).unwrap();
        let Value::List(a) = v.get("a").unwrap() else {
            panic!("{v:?}")
        };
        assert_eq!(
            a.items,
            vec![
                Value::Int(1),
                Value::Int(-2),
                Value::Float(3.5),
                Value::None,
                Value::Bool(true)
            ]
        );
        let Value::Tuple(b) = v.get("b").unwrap() else {
            panic!()
        };
        assert_eq!(b.items[0], Value::Bytes(Rc::from(&b"xy"[..])));
        assert_eq!(b.items[1], Value::Str("é".into()));
    }

    #[test]
    fn long1_is_twos_complement() {
        assert_eq!(unpickle(b"\x8a\x02\x00\x80.").unwrap(), Value::Int(-32768));
        assert_eq!(unpickle(b"\x8a\x01\x7f.").unwrap(), Value::Int(127));
        assert_eq!(unpickle(b"\x8a\x00.").unwrap(), Value::Int(0));
    }

    #[test]
    fn globals_are_refused_when_read_not_when_returned() {
        // os.system pushed, then popped: the result ({}) is harmless, the stream is not.
        let e = refused(b"\x80\x02cos\nsystem\n0}.");
        assert!(e.contains("`os.system`"), "{e}");
        let e = refused(b"\x80\x02\x8c\x05posix\x8c\x06system\x93.");
        assert!(e.contains("`posix.system`"), "{e}");
        let e = refused(b"(ibuiltins\neval\n.");
        assert!(e.contains("`builtins.eval`"), "{e}");
        let e = refused(b"ctorch\nload\n.");
        assert!(e.contains("`torch.load`"), "{e}");
    }

    #[test]
    fn unknown_and_forbidden_opcodes_are_named() {
        assert!(refused(b"\xff").contains("unknown pickle opcode 0xff at byte 0"));
        assert!(refused(b"\x80\x02\x82\x01").contains("EXT1"));
        assert!(refused(b"S'abc'\n.").contains("STRING"));
    }

    #[test]
    fn memo_doubling_is_capped() {
        // x = []; then 60 times: x = (x, x). Logically 2^60 items, a few hundred bytes.
        let mut p = b"\x80\x02]q\x00".to_vec();
        for _ in 0..60 {
            p.extend(b"h\x00h\x00\x86q\x00");
        }
        p.push(b'.');
        let e = malformed_msg(&p);
        assert!(e.contains("items"), "{e}");
    }

    #[test]
    fn copy_on_write_bombs_are_capped() {
        // A shared 1000-item list appended to repeatedly: each APPEND copies it.
        let mut p = b"(".to_vec();
        p.extend(std::iter::repeat_n(b'N', 1000));
        p.extend(b"lq\x00");
        for _ in 0..5_000 {
            p.extend(b"h\x00Na");
        }
        p.push(b'.');
        assert!(malformed_msg(&p).contains("container items"));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let mut p = vec![b']'; 100_000];
        p.extend(vec![b'a'; 99_999]);
        p.push(b'.');
        assert!(malformed_msg(&p).contains("nested"));
        let mut p = vec![b'('; 100_000];
        p.extend(vec![b't'; 100_000]);
        p.push(b'.');
        assert!(malformed_msg(&p).contains("nested"));
    }

    #[test]
    fn truncated_and_underflowing_streams_are_errors() {
        assert!(malformed_msg(b"X\xff\xff\xff\xff").contains("truncated"));
        assert!(malformed_msg(b"").contains("truncated"));
        assert!(malformed_msg(b"a").contains("underflow"));
        assert!(malformed_msg(b"(t0.").contains("underflow"));
        assert!(malformed_msg(b"h\x05").contains("memo entry 5"));
    }

    #[test]
    fn tensor_views_must_lie_inside_their_storage() {
        let tensor = |size: &[u8], stride: &[u8]| {
            let mut p =
                b"ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x06tQK\x00"
                    .to_vec();
            p.extend(size);
            p.extend(stride);
            p.extend(b"\x89}tR.");
            unpickle(&p)
        };
        let Value::Tensor(t) = tensor(b"K\x02K\x03\x86", b"K\x03K\x01\x86").unwrap() else {
            panic!()
        };
        assert_eq!(
            (t.shape.clone(), t.storage.kind),
            (vec![2, 3], StorageKind::F32)
        );
        assert!(tensor(b"K\x03K\x03\x86", b"K\x03K\x01\x86").is_err());
        assert!(tensor(b"J\x00\xca\x9a\x3b\x85", b"K\x00\x85").is_ok()); // stride-0 view
        assert!(tensor(b"K\x02\x85", b"K\x01K\x01\x86").is_err());
    }
}
