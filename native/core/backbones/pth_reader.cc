#include "core/backbones/pth_reader.h"

#include <caffe2/serialize/in_memory_adapter.h>
#include <caffe2/serialize/inline_container.h>
#include <torch/csrc/jit/serialization/pickle.h>

#include <cstring>
#include <map>
#include <memory>

#include "core/error.h"

namespace rp {

namespace {

// A storage named by a persistent id; its bytes come from the zip record or, in the legacy
// format, from the raw blocks after the pickles.
struct StorageRef {
  std::string key;
  torch::ScalarType dtype = torch::kFloat32;
  int64_t numel = 0;
  torch::Tensor data;  // [numel] once loaded
};

struct Value;
using ValuePtr = std::shared_ptr<Value>;

// The few Python objects a state-dict pickle builds.
struct Value {
  enum Kind { None, Bool, Int, BigInt, Float, Str, Tuple, List, Dict, Global, Storage, TensorRef, Mark } kind = None;
  int64_t i = 0;
  double f = 0;
  std::string s;                                  // Str; Global as "module.name"; BigInt: LE bytes
  std::vector<ValuePtr> items;                    // Tuple, List
  std::vector<std::pair<ValuePtr, ValuePtr>> dict;
  std::shared_ptr<StorageRef> storage;            // Storage, TensorRef
  int64_t offset = 0;                             // TensorRef: storage offset, sizes and strides
  std::vector<int64_t> sizes, strides;
  // Legacy views of a storage: (root, element offset, element count).
  int64_t viewOffset = 0, viewNumel = -1;
};

ValuePtr make(Value::Kind k) {
  auto v = std::make_shared<Value>();
  v->kind = k;
  return v;
}

torch::ScalarType storageDtype(const std::string& global, const std::string& label) {
  static const std::map<std::string, torch::ScalarType> kTypes = {
      {"torch.FloatStorage", torch::kFloat32}, {"torch.DoubleStorage", torch::kFloat64},
      {"torch.HalfStorage", torch::kFloat16},  {"torch.BFloat16Storage", torch::kBFloat16},
      {"torch.LongStorage", torch::kInt64},    {"torch.IntStorage", torch::kInt32},
      {"torch.ShortStorage", torch::kInt16},   {"torch.CharStorage", torch::kInt8},
      {"torch.ByteStorage", torch::kUInt8},    {"torch.BoolStorage", torch::kBool}};
  auto it = kTypes.find(global);
  RP_CHECK(it != kTypes.end(), Backbone, "weights file '" << label << "' holds a storage of unsupported type " << global);
  return it->second;
}

// A pickle virtual machine for the opcodes torch.save emits for a dict of tensors (protocol 2,
// Python 2 and 3 string opcodes, and the protocol 4 framing opcodes for good measure).
class Unpickler {
 public:
  Unpickler(const char* data, size_t size, const std::string& label) : p_(data), n_(size), label_(label) {}

  size_t position() const { return pos_; }

  ValuePtr load(std::vector<std::shared_ptr<StorageRef>>* storages) {
    stack_.clear();
    memo_.clear();
    for (;;) {
      const uint8_t op = u8();
      switch (op) {
        case 0x80: u8(); break;                      // PROTO
        case 0x95: take(8); break;                   // FRAME
        case '.': {                                  // STOP
          check(stack_.size() == 1, "unbalanced stack at STOP");
          return stack_.back();
        }
        case '(': stack_.push_back(make(Value::Mark)); break;
        case 'N': stack_.push_back(make(Value::None)); break;
        case 0x88: case 0x89: {                      // NEWTRUE, NEWFALSE
          auto v = make(Value::Bool);
          v->i = op == 0x88;
          stack_.push_back(v);
          break;
        }
        case 'J': pushInt(static_cast<int32_t>(le(4))); break;  // BININT
        case 'K': pushInt(static_cast<int64_t>(le(1))); break;  // BININT1
        case 'M': pushInt(static_cast<int64_t>(le(2))); break;  // BININT2
        case 0x8a: {                                 // LONG1: little-endian two's complement
          const size_t len = u8();
          if (len > 8) {  // only the legacy format's magic number is this large
            auto big = make(Value::BigInt);
            big->s.assign(take(len), len);
            stack_.push_back(big);
            break;
          }
          uint64_t v = len ? le(len) : 0;
          if (len > 0 && len < 8 && (v >> (8 * len - 1)) & 1) v |= ~0ull << (8 * len);
          pushInt(static_cast<int64_t>(v));
          break;
        }
        case 'G': {                                  // BINFLOAT: big-endian double
          uint64_t bits = 0;
          for (int k = 0; k < 8; ++k) bits = (bits << 8) | static_cast<uint8_t>(*take(1));
          auto v = make(Value::Float);
          std::memcpy(&v->f, &bits, 8);
          stack_.push_back(v);
          break;
        }
        case 'X': pushStr(le(4)); break;             // BINUNICODE
        case 0x8c: pushStr(le(1)); break;            // SHORT_BINUNICODE
        case 0x8d: pushStr(le(8)); break;            // BINUNICODE8
        case 'T': pushStr(le(4)); break;             // BINSTRING (Python 2 str)
        case 'U': pushStr(le(1)); break;             // SHORT_BINSTRING
        case '}': stack_.push_back(make(Value::Dict)); break;
        case ']': stack_.push_back(make(Value::List)); break;
        case ')': stack_.push_back(make(Value::Tuple)); break;
        case 'd': case 'l': case 't': {              // DICT, LIST, TUPLE from the last mark
          auto items = popToMark();
          auto v = make(op == 'd' ? Value::Dict : op == 'l' ? Value::List : Value::Tuple);
          if (op == 'd') {
            check(items.size() % 2 == 0, "odd DICT");
            for (size_t k = 0; k < items.size(); k += 2) v->dict.emplace_back(items[k], items[k + 1]);
          } else {
            v->items = std::move(items);
          }
          stack_.push_back(v);
          break;
        }
        case 0x85: case 0x86: case 0x87: {           // TUPLE1..3
          const size_t k = op - 0x84;
          check(stack_.size() >= k, "stack underflow");
          auto v = make(Value::Tuple);
          v->items.assign(stack_.end() - k, stack_.end());
          stack_.resize(stack_.size() - k);
          stack_.push_back(v);
          break;
        }
        case 'q': memo_[le(1)] = top(); break;       // BINPUT
        case 'r': memo_[le(4)] = top(); break;       // LONG_BINPUT
        case 0x94: memo_[memo_.size()] = top(); break;  // MEMOIZE
        case 'h': case 'j': {                        // BINGET, LONG_BINGET
          auto it = memo_.find(le(op == 'h' ? 1 : 4));
          check(it != memo_.end(), "memo key missing");
          stack_.push_back(it->second);
          break;
        }
        case 'c': {                                  // GLOBAL "module\nname\n"
          auto module = line();
          auto name = line();
          auto v = make(Value::Global);
          v->s = module + "." + name;
          stack_.push_back(v);
          break;
        }
        case 0x93: {                                 // STACK_GLOBAL
          auto name = pop(), module = pop();
          check(module->kind == Value::Str && name->kind == Value::Str, "bad STACK_GLOBAL");
          auto v = make(Value::Global);
          v->s = module->s + "." + name->s;
          stack_.push_back(v);
          break;
        }
        case 'Q': stack_.push_back(persistent(pop(), storages)); break;  // BINPERSID
        case 'R': {                                  // REDUCE
          auto args = pop(), fn = pop();
          stack_.push_back(reduce(fn, args));
          break;
        }
        case 'b': pop(); break;                      // BUILD: state dicts' `_metadata` is not needed
        case 's': {                                  // SETITEM
          auto value = pop(), key = pop();
          auto d = top();
          check(d->kind == Value::Dict, "SETITEM on a non-dict");
          d->dict.emplace_back(key, value);
          break;
        }
        case 'u': {                                  // SETITEMS
          auto items = popToMark();
          auto d = top();
          check(d->kind == Value::Dict && items.size() % 2 == 0, "SETITEMS on a non-dict");
          for (size_t k = 0; k < items.size(); k += 2) d->dict.emplace_back(items[k], items[k + 1]);
          break;
        }
        case 'a': {                                  // APPEND
          auto v = pop();
          check(top()->kind == Value::List, "APPEND on a non-list");
          top()->items.push_back(v);
          break;
        }
        case 'e': {                                  // APPENDS
          auto items = popToMark();
          check(top()->kind == Value::List, "APPENDS on a non-list");
          for (auto& v : items) top()->items.push_back(v);
          break;
        }
        default:
          RP_FAIL(Backbone, "weights file '" << label_ << "' is not a PyTorch state dict (pickle opcode 0x" << std::hex
                                             << static_cast<int>(op) << " at byte " << std::dec << pos_ - 1
                                             << " is not used by state dicts)");
      }
    }
  }

 private:
  void check(bool ok, const char* what) const {
    RP_CHECK(ok, Backbone, "weights file '" << label_ << "' is not a PyTorch state dict (" << what << " at byte " << pos_ << ")");
  }
  const char* take(size_t k) {
    check(k <= n_ - pos_, "truncated");
    const char* r = p_ + pos_;
    pos_ += k;
    return r;
  }
  uint8_t u8() { return static_cast<uint8_t>(*take(1)); }
  uint64_t le(size_t k) {
    const char* b = take(k);
    uint64_t v = 0;
    for (size_t j = 0; j < k; ++j) v |= static_cast<uint64_t>(static_cast<uint8_t>(b[j])) << (8 * j);
    return v;
  }
  std::string line() {
    size_t start = pos_;
    while (pos_ < n_ && p_[pos_] != '\n') ++pos_;
    check(pos_ < n_, "truncated");
    return std::string(p_ + start, p_ + pos_++);
  }
  void pushInt(int64_t i) {
    auto v = make(Value::Int);
    v->i = i;
    stack_.push_back(v);
  }
  void pushStr(uint64_t len) {
    check(len <= n_ - pos_, "truncated");
    auto v = make(Value::Str);
    v->s.assign(take(len), len);
    stack_.push_back(v);
  }
  ValuePtr top() {
    check(!stack_.empty(), "stack underflow");
    return stack_.back();
  }
  ValuePtr pop() {
    auto v = top();
    stack_.pop_back();
    return v;
  }
  std::vector<ValuePtr> popToMark() {
    size_t m = stack_.size();
    while (m > 0 && stack_[m - 1]->kind != Value::Mark) --m;
    check(m > 0, "no MARK");
    std::vector<ValuePtr> items(stack_.begin() + m, stack_.end());
    stack_.resize(m - 1);
    return items;
  }

  std::vector<int64_t> ints(const ValuePtr& v) {
    check(v->kind == Value::Tuple || v->kind == Value::List, "expected a tuple of ints");
    std::vector<int64_t> out;
    for (auto& x : v->items) {
      check(x->kind == Value::Int, "expected a tuple of ints");
      out.push_back(x->i);
    }
    return out;
  }

  // ('storage', torch.XStorage, key, location, numel[, view_metadata])
  ValuePtr persistent(const ValuePtr& pid, std::vector<std::shared_ptr<StorageRef>>* storages) {
    check(pid->kind == Value::Tuple && pid->items.size() >= 5 && pid->items[0]->kind == Value::Str &&
              pid->items[0]->s == "storage" && pid->items[1]->kind == Value::Global && pid->items[2]->kind == Value::Str &&
              pid->items[4]->kind == Value::Int,
          "unknown persistent id");
    const std::string& key = pid->items[2]->s;
    std::shared_ptr<StorageRef> ref;
    for (auto& s : *storages)
      if (s->key == key) ref = s;
    if (!ref) {
      ref = std::make_shared<StorageRef>();
      ref->key = key;
      ref->dtype = storageDtype(pid->items[1]->s, label_);
      ref->numel = pid->items[4]->i;
      check(ref->numel >= 0, "negative storage size");
      storages->push_back(ref);
    }
    auto v = make(Value::Storage);
    v->storage = ref;
    if (pid->items.size() >= 6 && pid->items[5]->kind == Value::Tuple) {  // legacy view (key, offset, numel)
      const auto& view = pid->items[5]->items;
      check(view.size() == 3 && view[1]->kind == Value::Int && view[2]->kind == Value::Int, "bad storage view");
      v->viewOffset = view[1]->i;
      v->viewNumel = view[2]->i;
    }
    return v;
  }

  ValuePtr reduce(const ValuePtr& fn, const ValuePtr& args) {
    check(fn->kind == Value::Global && args->kind == Value::Tuple, "REDUCE of a non-global");
    const std::string& f = fn->s;
    if (f == "collections.OrderedDict") return make(Value::Dict);
    if (f == "torch._utils._rebuild_tensor_v2" || f == "torch._utils._rebuild_tensor") {
      const auto& a = args->items;
      check(a.size() >= 4 && a[0]->kind == Value::Storage && a[1]->kind == Value::Int, "bad tensor rebuild");
      auto t = make(Value::TensorRef);
      t->storage = a[0]->storage;
      t->offset = a[1]->i + a[0]->viewOffset;
      t->sizes = ints(a[2]);
      t->strides = ints(a[3]);
      check(t->sizes.size() == t->strides.size(), "tensor sizes and strides differ in rank");
      return t;
    }
    // nn.Parameter(data, requires_grad, hooks) -> data; libtorch's pickle_save tags typed dicts.
    if (f == "torch._utils._rebuild_parameter" || f == "torch.jit._pickle.restore_type_tag") {
      check(!args->items.empty(), "bad rebuild arguments");
      return args->items[0];
    }
    RP_FAIL(Backbone, "weights file '" << label_ << "' is not a plain state dict: it calls " << f
                                       << "; save model.state_dict(), not the model object");
  }

  const char* p_;
  size_t n_;
  size_t pos_ = 0;
  std::string label_;
  std::vector<ValuePtr> stack_;
  std::map<uint64_t, ValuePtr> memo_;
};

bool isZip(const std::string& bytes) { return bytes.size() >= 4 && std::memcmp(bytes.data(), "PK\x03\x04", 4) == 0; }

StateDict toStateDict(const ValuePtr& root, const std::string& label) {
  RP_CHECK(root->kind == Value::Dict, Backbone,
           "weights file '" << label << "' holds a pickled object that is not a dict; save model.state_dict()");
  StateDict out;
  for (const auto& [k, v] : root->dict) {
    RP_CHECK(k->kind == Value::Str, Backbone, "weights file '" << label << "' has a non-string key");
    if (v->kind != Value::TensorRef) continue;  // e.g. nested metadata: not a parameter
    const auto& s = *v->storage;
    RP_CHECK(s.data.defined(), Backbone, "weights file '" << label << "' lacks the data of storage " << s.key);
    int64_t extent = 1;  // highest element index + 1 the view reaches
    for (size_t d = 0; d < v->sizes.size(); ++d) {
      if (v->sizes[d] == 0) extent = 0;
      else extent += (v->sizes[d] - 1) * v->strides[d];
    }
    RP_CHECK(v->offset >= 0 && (extent == 0 || v->offset + extent <= s.numel), Backbone,
             "weights file '" << label << "': tensor '" << k->s << "' lies outside its storage");
    out.emplace_back(k->s, s.data.as_strided(v->sizes, v->strides, v->offset));
  }
  return out;
}

// Zip format: archive/data.pkl plus one record per storage, archive/data/<key>.
StateDict parseZip(const std::string& bytes, const std::string& label) {
  std::unique_ptr<caffe2::serialize::PyTorchStreamReader> reader;
  try {
    reader = std::make_unique<caffe2::serialize::PyTorchStreamReader>(
        std::make_shared<caffe2::serialize::MemoryReadAdapter>(bytes.data(), static_cast<off_t>(bytes.size())));
  } catch (const c10::Error& e) {
    RP_FAIL(Backbone, "weights file '" << label << "' is not a readable torch.save zip archive: " << e.what_without_backtrace());
  }
  RP_CHECK(reader->hasRecord("data.pkl"), Backbone, "weights file '" << label << "' is a zip archive without data.pkl; it is not a torch.save file");
  auto [pkl, pklSize] = reader->getRecord("data.pkl");
  std::vector<std::shared_ptr<StorageRef>> storages;
  auto root = Unpickler(static_cast<const char*>(pkl.get()), pklSize, label).load(&storages);
  for (auto& s : storages) {
    const std::string name = "data/" + s->key;
    RP_CHECK(reader->hasRecord(name), Backbone, "weights file '" << label << "' lacks record " << name);
    auto [ptr, size] = reader->getRecord(name);
    const size_t need = static_cast<size_t>(s->numel) * c10::elementSize(s->dtype);
    RP_CHECK(size >= need, Backbone, "weights file '" << label << "': record " << name << " is truncated");
    s->data = torch::empty({s->numel}, torch::TensorOptions().dtype(s->dtype));
    if (need) std::memcpy(s->data.data_ptr(), ptr.get(), need);
  }
  return toStateDict(root, label);
}

// Legacy format: pickles of the magic number, protocol version and system info, then the object
// (storages as persistent ids), then the sorted storage keys; then per key an int64 element count
// and the raw little-endian data.
StateDict parseLegacy(const std::string& bytes, const std::string& label) {
  static const char kMagic[] = "\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19";  // 0x1950a86a20f9469cfc6c, LE
  RP_CHECK(bytes.size() > 2 && static_cast<uint8_t>(bytes[0]) == 0x80, Backbone,
           "weights file '" << label << "' is not a PyTorch .pth file (neither a zip archive nor a pickle)");
  Unpickler u(bytes.data(), bytes.size(), label);
  std::vector<std::shared_ptr<StorageRef>> storages;
  auto magic = u.load(&storages);
  RP_CHECK(magic->kind == Value::BigInt && magic->s == std::string(kMagic, 10), Backbone,
           "weights file '" << label << "' is a pickle but not a torch.save file (no magic number)");
  u.load(&storages);  // protocol version
  u.load(&storages);  // system info
  auto root = u.load(&storages);
  auto keys = u.load(&storages);
  RP_CHECK(keys->kind == Value::List, Backbone, "weights file '" << label << "' has no storage key list");
  size_t pos = u.position();
  for (const auto& k : keys->items) {
    RP_CHECK(k->kind == Value::Str, Backbone, "weights file '" << label << "' has a non-string storage key");
    std::shared_ptr<StorageRef> s;
    for (auto& c : storages)
      if (c->key == k->s) s = c;
    RP_CHECK(pos + 8 <= bytes.size(), Backbone, "weights file '" << label << "' is truncated");
    int64_t numel;
    std::memcpy(&numel, bytes.data() + pos, 8);
    pos += 8;
    const auto dtype = s ? s->dtype : torch::kUInt8;
    const size_t nbytes = static_cast<size_t>(numel) * c10::elementSize(dtype);
    RP_CHECK(numel >= 0 && nbytes <= bytes.size() - pos, Backbone, "weights file '" << label << "' is truncated");
    if (s) {
      RP_CHECK(numel >= s->numel, Backbone, "weights file '" << label << "': storage " << s->key << " is too short");
      s->data = torch::empty({numel}, torch::TensorOptions().dtype(dtype));
      if (nbytes) std::memcpy(s->data.data_ptr(), bytes.data() + pos, nbytes);
    }
    pos += nbytes;
  }
  return toStateDict(root, label);
}

}  // namespace

StateDict parseStateDict(const std::string& bytes, const std::string& label) {
  try {
    return isZip(bytes) ? parseZip(bytes, label) : parseLegacy(bytes, label);
  } catch (const c10::Error& e) {
    RP_FAIL(Backbone, "cannot read weights file '" << label << "': " << e.what_without_backtrace());
  }
}

std::string serializeStateDict(const StateDict& dict) {
  c10::Dict<std::string, at::Tensor> d;
  for (const auto& [name, t] : dict) d.insert(name, t.contiguous().clone());
  auto bytes = torch::jit::pickle_save(d);
  return std::string(bytes.begin(), bytes.end());
}

}  // namespace rp
