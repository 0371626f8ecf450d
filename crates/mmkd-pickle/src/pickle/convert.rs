//! Turning the arena into the owned [`Value`] tree at STOP.
//!
//! This is where the nesting limit is enforced: the arena is flat, so a hostile, deeply nested stream
//! can be built and dropped without recursion, and only this walk (bounded by [`Limits::max_depth`])
//! recurses. Objects reached once are moved into the tree; objects reached several times (GET, DUP)
//! are copied, against the data budget.
//!
//! [`Limits::max_depth`]: super::Limits::max_depth

use std::borrow::Cow;

use super::arena::{Arena, ArrayNode, ArrayStore, Id, Node};
use super::globals;
use super::limits::Budget;
use super::machine::Machine;
use super::{ArrayData, NdArray, PickleError, RawBuffer, Result, Value};

impl<'a> Machine<'a> {
    /// Builds the owned tree, and the buffers its [`ArrayData::Raw`] arrays refer to. Objects reached
    /// once are moved; objects reached several times (through GET/DUP) are copied on every visit but
    /// the last, against the data budget.
    pub(super) fn build_value(&mut self, root: Id) -> Result<(Value, Vec<Cow<'a, [u8]>>)> {
        let mut remaining = self.count_references(root);
        let mut convert = Convert { remaining: &mut remaining, budget: self.budget, max_depth: self.limits.max_depth, buffers: Vec::new() };
        let value = convert.value(&mut self.nodes, root, 0, false)?;
        Ok((value, convert.buffers))
    }

    /// In-degree of every object reachable from `root` (plus one for the root itself); zero means
    /// not reached yet, so the same vector doubles as the "seen" set of this iterative walk.
    fn count_references(&self, root: Id) -> Vec<u32> {
        let mut refs = vec![0u32; self.nodes.len()];
        let mut pending = Vec::new();
        if let Some(r) = refs.get_mut(root as usize) {
            *r = 1;
            pending.push(root);
        }
        while let Some(id) = pending.pop() {
            let node = self.node(id);
            let dict_children = match node {
                Node::Dict(pairs) => pairs.as_slice(),
                _ => &[],
            };
            let children = node.children().iter().copied().chain(dict_children.iter().flat_map(|&(k, v)| [k, v]));
            for child in children {
                if let Some(r) = refs.get_mut(child as usize) {
                    if *r == 0 {
                        pending.push(child);
                    }
                    *r = r.saturating_add(1);
                }
            }
        }
        refs
    }
}

/// State of the arena-to-tree conversion.
struct Convert<'r, 'a> {
    /// Moving visits left per object; the last one moves instead of copying.
    remaining: &'r mut [u32],
    budget: Budget,
    max_depth: usize,
    /// The elements of the [`ArrayData::Raw`] arrays built so far: one entry per array in the tree
    /// (a copied array gets its own entry), so each is referred to exactly once.
    buffers: Vec<Cow<'a, [u8]>>,
}

impl<'a> Convert<'_, 'a> {
    /// Converts object `id`. `copying` is set below an object that is being copied: everything under
    /// it is copied too and the visit counts are left alone, since they count moving visits only
    /// (each edge of the object graph is walked exactly once in moving mode).
    fn value(&mut self, nodes: &mut Arena<'a>, id: Id, depth: usize, copying: bool) -> Result<Value> {
        if depth > self.max_depth {
            return Err(PickleError::TooDeep { limit: self.max_depth });
        }
        let last_visit = !copying
            && self.remaining.get_mut(id as usize).is_some_and(|r| {
                *r = r.saturating_sub(1);
                *r == 0
            });
        let copying = !last_visit;
        let Some(slot) = nodes.get_mut(id) else {
            return Ok(Value::None);
        };
        let node = if copying {
            self.budget.charge(copy_cost(slot))?;
            copy_node(slot)
        } else {
            std::mem::replace(slot, Node::Taken)
        };
        let depth = depth + 1;
        Ok(match node {
            Node::None => Value::None,
            Node::Bool(b) => Value::Bool(b),
            Node::Int(v) => Value::Int(v),
            Node::BigInt(b) => Value::BigInt(b.to_vec()),
            Node::Float(v) => Value::Float(v),
            Node::Str(s) => Value::Str(s.into_owned()),
            Node::Bytes(b) => Value::Bytes(b.into_owned()),
            Node::List(v) => Value::List(self.values(nodes, &v, depth, copying)?),
            Node::Tuple(v) => Value::Tuple(self.values(nodes, &v, depth, copying)?),
            Node::Set(v) => Value::Set(self.values(nodes, &v, depth, copying)?),
            Node::Dict(pairs) => {
                let mut out = Vec::with_capacity(pairs.len());
                for (k, v) in pairs {
                    out.push((self.value(nodes, k, depth, copying)?, self.value(nodes, v, depth, copying)?));
                }
                Value::Dict(out)
            }
            Node::Global(i) => globals::global_name(i).map_or(Value::None, Value::Global),
            Node::Dtype(d) => Value::Dtype(d),
            Node::Array(array) => self.array(nodes, *array, depth, copying)?,
            Node::Taken => {
                // Only reachable if the visit counts were wrong; report it rather than guess.
                return Err(PickleError::Malformed { what: "object graph", pos: 0, detail: "object used after being moved".into() });
            }
        })
    }

    fn values(&mut self, nodes: &mut Arena<'a>, ids: &[Id], depth: usize, copying: bool) -> Result<Vec<Value>> {
        let mut out = Vec::with_capacity(ids.len());
        for &id in ids {
            out.push(self.value(nodes, id, depth, copying)?);
        }
        Ok(out)
    }

    /// An array's elements: as decoded, converted from arena objects, or (raw) moved to
    /// [`Convert::buffers`] and referred to by index.
    fn array(&mut self, nodes: &mut Arena<'a>, array: ArrayNode<'a>, depth: usize, copying: bool) -> Result<Value> {
        let ArrayNode { shape, dtype, data } = array;
        let data = match data {
            ArrayStore::Plain(d) => d,
            ArrayStore::Objects(v) => ArrayData::Object(self.values(nodes, &v, depth, copying)?),
            ArrayStore::Raw { bytes, fortran } => {
                let len = bytes.len().checked_div(dtype.itemsize).unwrap_or(0);
                self.buffers.push(bytes);
                ArrayData::Raw(RawBuffer { index: self.buffers.len() - 1, len, fortran_order: fortran })
            }
        };
        Ok(Value::NdArray(Box::new(NdArray { shape, dtype, data })))
    }
}

/// What copying `node` adds to the derived data. Only heap payloads cost anything extra; scalars are
/// copied for free.
fn copy_cost(node: &Node<'_>) -> usize {
    match node {
        Node::Str(s) => s.len(),
        Node::Bytes(b) => b.len(),
        Node::BigInt(b) => b.len(),
        Node::List(v) | Node::Tuple(v) | Node::Set(v) => v.len() * size_of::<Value>(),
        Node::Dict(p) => p.len() * 2 * size_of::<Value>(),
        Node::Array(a) => array_bytes(a),
        _ => 0,
    }
}

fn copy_node<'a>(node: &Node<'a>) -> Node<'a> {
    match node {
        Node::None => Node::None,
        Node::Bool(b) => Node::Bool(*b),
        Node::Int(v) => Node::Int(*v),
        Node::BigInt(b) => Node::BigInt(b),
        Node::Float(v) => Node::Float(*v),
        Node::Str(s) => Node::Str(s.clone()),
        Node::Bytes(b) => Node::Bytes(b.clone()),
        Node::List(v) => Node::List(v.clone()),
        Node::Tuple(v) => Node::Tuple(v.clone()),
        Node::Set(v) => Node::Set(v.clone()),
        Node::Dict(p) => Node::Dict(p.clone()),
        Node::Global(i) => Node::Global(*i),
        Node::Dtype(d) => Node::Dtype(*d),
        Node::Array(a) => Node::Array(Box::new(ArrayNode {
            shape: a.shape.clone(),
            dtype: a.dtype,
            data: match &a.data {
                ArrayStore::Plain(d) => ArrayStore::Plain(d.clone()),
                ArrayStore::Objects(v) => ArrayStore::Objects(v.clone()),
                ArrayStore::Raw { bytes, fortran } => ArrayStore::Raw { bytes: bytes.clone(), fortran: *fortran },
            },
        })),
        Node::Taken => Node::Taken,
    }
}

fn array_bytes(array: &ArrayNode<'_>) -> usize {
    match &array.data {
        ArrayStore::Plain(ArrayData::F32(v)) => v.len() * size_of::<f32>(),
        ArrayStore::Plain(ArrayData::I64(v)) => v.len() * size_of::<i64>(),
        ArrayStore::Plain(ArrayData::Bool(v)) => v.len(),
        ArrayStore::Plain(ArrayData::Bytes(v)) => v.iter().map(|b| b.len() + size_of::<Vec<u8>>()).sum(),
        ArrayStore::Plain(ArrayData::Str(v)) => v.iter().map(|s| s.len() + size_of::<String>()).sum(),
        ArrayStore::Plain(ArrayData::Object(v)) => v.len() * size_of::<Value>(),
        ArrayStore::Plain(ArrayData::Raw(_)) => 0, // Never stored in the arena.
        ArrayStore::Objects(v) => v.len() * (size_of::<Value>() + size_of::<Id>()),
        // A borrowed slice is free to copy (its buffer entry is not); owned bytes are copied.
        ArrayStore::Raw { bytes, .. } => {
            size_of::<Cow<'_, [u8]>>()
                + match bytes {
                    Cow::Borrowed(_) => 0,
                    Cow::Owned(v) => v.len(),
                }
        }
    }
}
