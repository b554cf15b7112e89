// Buffer planning, once per model: decides where every value lives so that predict()
// allocates nothing and copies little.
//  * Concat in place: an input produced by an op of this graph is written directly into
//    its channel slice of the concat output (NHWC pixel stride = output channels), so
//    BinaryDenseNet's growing concatenations cost nothing.
//  * In-place element-wise ops (InPlace in op_list.h: AddToLastChannels, Add, Affine, Relu)
//    overwrite their input when nothing reads it (or any value sharing its memory) afterwards.
//  * Storages (roots of those alias trees) get arena offsets by greedy first-fit over
//    their live intervals; all sizes scale linearly with the batch size, so the plan is
//    made at batch 1 and scaled.
#include <algorithm>

#include "runtime/graph.h"
#include "runtime/registry.h"

namespace bmx::rt {

namespace {

struct Forest {
  std::vector<int> parent;
  std::vector<std::int64_t> off;  // channel offset relative to parent
  explicit Forest(int n) : parent(n, -1), off(n, 0) {}
  // Root of v with path compression; off[v] becomes relative to the root.
  int find(int v) {
    std::vector<int> path;
    int r = v;
    while (parent[r] != -1) { path.push_back(r); r = parent[r]; }
    // Walk from the node nearest the root down, accumulating offsets.
    for (auto it = path.rbegin(); it != path.rend(); ++it) {
      const int x = *it;
      if (parent[x] != r) { off[x] += off[parent[x]]; parent[x] = r; }
    }
    return r;
  }
};

// The registry's InPlace column (op_list.h): AddToLastChannels, Add, Affine, Relu.
bool elementwise_in_place_ok(OpType t) { return op_info(t).in_place; }

}  // namespace

Plan make_plan(const Graph& g) {
  const int nv = static_cast<int>(g.values.size());
  const int nops = static_cast<int>(g.ops.size());
  std::vector<int> def(nv, -2), last(nv, -2);
  def[g.input] = -1;
  for (int k = 0; k < nops; ++k) {
    for (int v : g.ops[k].in) last[v] = std::max(last[v], k);
    def[g.ops[k].out] = k;
  }
  last[g.output] = nops;  // read by the caller after the last op
  for (int v = 0; v < nv; ++v) if (def[v] != -2 && last[v] == -2) last[v] = def[v];

  Forest f(nv);
  std::vector<int> tree_last(last);  // per root: latest read of any member
  std::vector<char> pinned(nv, 0);    // never aliased: graph input and output
  pinned[g.input] = pinned[g.output] = 1;

  for (int k = 0; k < nops; ++k) {
    const OpNode& op = g.ops[k];
    const ValueInfo& ov = g.values[op.out];
    if (op.type == OpType::Concat && !pinned[op.out]) {
      std::int64_t acc = 0;
      for (std::size_t i = 0; i < op.in.size(); ++i) {
        const int v = op.in[i];
        const ValueInfo& vi = g.values[v];
        const bool dup = std::count(op.in.begin(), op.in.end(), v) > 1;
        if (!pinned[v] && !dup && !vi.bits && vi.rank == 4 && f.parent[v] == -1 && def[v] >= 0 && v != op.out) {
          f.parent[v] = op.out;
          f.off[v] = acc;
          tree_last[op.out] = std::max(tree_last[op.out], tree_last[v]);
        }
        acc += vi.c;
      }
    } else if (elementwise_in_place_ok(op.type) && !pinned[op.out] && !ov.bits) {
      const int a = op.in[0];
      const ValueInfo& av = g.values[a];
      bool ok = !pinned[a] && def[a] >= 0 && f.parent[a] == -1 && tree_last[a] <= k && av.rank == ov.rank &&
                av.c == ov.c && av.h == ov.h && av.w == ov.w;
      if (ok && op.in.size() > 1) {
        const int b = op.in[1];
        ok = b != a && f.find(b) != a;
      }
      if (ok) {
        f.parent[a] = op.out;
        f.off[a] = 0;
        tree_last[op.out] = std::max(tree_last[op.out], tree_last[a]);
      }
    }
  }

  // Storages: roots of defined values.
  Plan p;
  p.place.resize(nv);
  std::vector<int> storage_of_root(nv, -1);
  struct S { int root; std::int64_t first, last; std::size_t bytes; };
  std::vector<S> st;
  for (int v = 0; v < nv; ++v) {
    if (def[v] == -2) continue;  // never computed nor read: no storage
    const int r = f.find(v);
    if (storage_of_root[r] == -1) {
      const ValueInfo& rv = g.values[r];
      const std::size_t bytes = static_cast<std::size_t>(rv.elems()) * (rv.bits ? 8 : 4);
      storage_of_root[r] = static_cast<int>(st.size());
      st.push_back({r, def[v], last[v], (bytes + 63) / 64 * 64});
    }
    S& s = st[storage_of_root[r]];
    s.first = std::min<std::int64_t>(s.first, def[v]);
    s.last = std::max<std::int64_t>(s.last, last[v]);
    Placement& pl = p.place[v];
    pl.storage = storage_of_root[r];
    pl.chan_offset = (v == r) ? 0 : f.off[v];
    const ValueInfo& rv = g.values[r];
    pl.pixel_stride = rv.pixel_elems();
  }

  // Greedy first-fit, largest first, over overlapping live intervals.
  std::vector<int> order(st.size());
  for (std::size_t i = 0; i < st.size(); ++i) order[i] = static_cast<int>(i);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return st[a].bytes > st[b].bytes; });
  p.storage_offset.assign(st.size(), 0);
  p.storage_bytes.resize(st.size());
  for (std::size_t i = 0; i < st.size(); ++i) p.storage_bytes[i] = st[i].bytes;
  std::vector<int> placed;
  std::vector<std::pair<std::size_t, std::size_t>> busy;
  for (int s : order) {
    busy.clear();
    for (int t : placed) {
      if (st[t].first <= st[s].last && st[s].first <= st[t].last) {
        busy.push_back({p.storage_offset[t], p.storage_offset[t] + st[t].bytes});
      }
    }
    std::sort(busy.begin(), busy.end());
    std::size_t off = 0;
    for (const auto& b : busy) {
      if (b.first >= off + st[s].bytes) break;
      off = std::max(off, b.second);
    }
    p.storage_offset[s] = off;
    p.arena_bytes = std::max(p.arena_bytes, off + st[s].bytes);
    placed.push_back(s);
  }
  return p;
}

void fuse_residual_adds(Graph& g, const Plan& p) {
  std::vector<int> reads(g.values.size(), 0);
  for (const OpNode& op : g.ops)
    for (int v : op.in) ++reads[v];
  for (std::size_t k = 0; k + 1 < g.ops.size(); ++k) {
    OpNode& c = g.ops[k];
    OpNode& a = g.ops[k + 1];
    if (c.type != OpType::BinaryConv2D || c.groups != 1 || a.type != OpType::Add || a.in.size() != 2) continue;
    const int v = c.out;
    if (a.in[0] != v || a.in[1] == v || reads[v] != 1 || v == g.output || a.out == g.output) continue;
    const Placement& pv = p.place[v];
    const Placement& po = p.place[a.out];
    const ValueInfo& vi = g.values[v];
    const ValueInfo& ri = g.values[a.in[1]];
    if (pv.storage != po.storage || pv.chan_offset != po.chan_offset || pv.pixel_stride != po.pixel_stride) continue;
    if (ri.bits || ri.c != vi.c || ri.h != vi.h || ri.w != vi.w) continue;
    c.fused_residual = a.in[1];
    a.fused_away = true;
  }
}

}  // namespace bmx::rt
