// skiplist.h: the ordered index of a memtable. One writer, any number of lock-free readers.
//
// Thread safety:
//  - Insert requires external synchronization: one writer at a time (the DB mutex).
//  - Readers (Contains, iterators) need no lock and may run concurrently with the writer.
//  - The list must outlive every reader; nodes are never removed.
//
// Invariants:
//  1. Nodes are allocated in the Arena and never freed or moved while the list lives.
//  2. A node is fully initialized (key, and its next pointers at every level it has) before
//     it is published by the release store that links it at level 0; readers load next
//     pointers with acquire, so a reader that reaches a node sees it whole.
//  3. At every level, the list is sorted by Comparator and holds no duplicate keys.
//  4. max_height_ only grows; a reader seeing a stale (smaller) height simply starts lower,
//     and one seeing a new height before the head's new levels are linked reads null there,
//     which means "end of this level": both are correct.
//
// Heights are random with branching factor 4 (probability 1/4 per extra level), up to
// kMaxHeight = 12, enough for 4^12 = 16M entries at full efficiency.
#pragma once

#include <atomic>
#include <cstdint>
#include <new>
#include <random>

#include "engine/assert.h"
#include "memtable/arena.h"

namespace cascadefs::engine {

template <typename Key, class Comparator>
class SkipList {
 private:
  struct Node;

 public:
  static constexpr int kMaxHeight = 12;
  static constexpr unsigned kBranching = 4;

  // `arena` holds the nodes; both it and `compare` must outlive the list.
  SkipList(Comparator compare, Arena* arena);
  SkipList(const SkipList&) = delete;
  SkipList& operator=(const SkipList&) = delete;

  // REQUIRES: no equal key is in the list; one writer at a time.
  void Insert(const Key& key);
  bool Contains(const Key& key) const;

  class Iterator {
   public:
    explicit Iterator(const SkipList* list) : list_(list) {}
    bool Valid() const { return node_ != nullptr; }
    // REQUIRES: Valid().
    const Key& key() const {
      CFS_DASSERT(Valid());
      return node_->key;
    }
    void Next() {
      CFS_DASSERT(Valid());
      node_ = node_->NextAcquire(0);
    }
    // The last node before the current one (a search: O(log n)).
    void Prev() {
      CFS_DASSERT(Valid());
      node_ = list_->FindLessThan(node_->key);
      if (node_ == list_->head_) node_ = nullptr;
    }
    // The first entry >= target.
    void Seek(const Key& target) { node_ = list_->FindGreaterOrEqual(target, nullptr); }
    void SeekToFirst() { node_ = list_->head_->NextAcquire(0); }
    void SeekToLast() {
      node_ = list_->FindLast();
      if (node_ == list_->head_) node_ = nullptr;
    }

   private:
    const SkipList* list_;
    Node* node_ = nullptr;
  };

 private:
  // A node is its key followed, in the same arena allocation, by `height` next pointers
  // (laid out after the struct rather than as a trailing array member, which would be read
  // out of its declared bounds).
  struct Node {
    explicit Node(const Key& k) : key(k) {}
    Key const key;
    std::atomic<Node*>* links() const {
      return reinterpret_cast<std::atomic<Node*>*>(
          const_cast<char*>(reinterpret_cast<const char*>(this)) + sizeof(Node));
    }
    Node* NextAcquire(int level) const { return links()[level].load(std::memory_order_acquire); }
    void SetNextRelease(int level, Node* node) {
      links()[level].store(node, std::memory_order_release);
    }
    Node* NextRelaxed(int level) const { return links()[level].load(std::memory_order_relaxed); }
    void SetNextRelaxed(int level, Node* node) {
      links()[level].store(node, std::memory_order_relaxed);
    }
  };
  static_assert(sizeof(Node) % alignof(std::atomic<Node*>) == 0, "links start aligned");

  Node* NewNode(const Key& key, int height);
  int RandomHeight();
  int max_height() const { return max_height_.load(std::memory_order_relaxed); }
  bool KeyIsAfterNode(const Key& key, const Node* node) const {
    return node != nullptr && compare_(node->key, key) < 0;
  }
  // The first node >= key; fills prev[level] with the last node < key at each level.
  Node* FindGreaterOrEqual(const Key& key, Node** prev) const;
  // The last node < key, or head_.
  Node* FindLessThan(const Key& key) const;
  // The last node, or head_ when empty.
  Node* FindLast() const;

  Comparator const compare_;
  Arena* const arena_;
  Node* const head_;
  std::atomic<int> max_height_{1};    // written by the writer only (invariant 4)
  std::minstd_rand rng_{0xdecafbad};  // the writer's: heights
};

template <typename Key, class Comparator>
SkipList<Key, Comparator>::SkipList(Comparator compare, Arena* arena)
    : compare_(compare), arena_(arena), head_(NewNode(Key(), kMaxHeight)) {
  for (int level = 0; level < kMaxHeight; ++level) head_->SetNextRelaxed(level, nullptr);
}

template <typename Key, class Comparator>
typename SkipList<Key, Comparator>::Node* SkipList<Key, Comparator>::NewNode(const Key& key,
                                                                             int height) {
  char* memory = arena_->AllocateAligned(sizeof(Node) + sizeof(std::atomic<Node*>) *
                                                            static_cast<std::size_t>(height));
  Node* node = new (memory) Node(key);
  for (int level = 0; level < height; ++level) {
    new (node->links() + level) std::atomic<Node*>(nullptr);
  }
  return node;
}

template <typename Key, class Comparator>
int SkipList<Key, Comparator>::RandomHeight() {
  int height = 1;
  while (height < kMaxHeight && rng_() % kBranching == 0) ++height;
  CFS_DASSERT(height >= 1 && height <= kMaxHeight);
  return height;
}

template <typename Key, class Comparator>
typename SkipList<Key, Comparator>::Node* SkipList<Key, Comparator>::FindGreaterOrEqual(
    const Key& key, Node** prev) const {
  Node* node = head_;
  int level = max_height() - 1;
  for (;;) {
    Node* next = node->NextAcquire(level);
    if (KeyIsAfterNode(key, next)) {
      node = next;  // keep searching in this level
    } else {
      if (prev != nullptr) prev[level] = node;
      if (level == 0) return next;
      --level;
    }
  }
}

template <typename Key, class Comparator>
typename SkipList<Key, Comparator>::Node* SkipList<Key, Comparator>::FindLessThan(
    const Key& key) const {
  Node* node = head_;
  int level = max_height() - 1;
  for (;;) {
    CFS_DASSERT(node == head_ || compare_(node->key, key) < 0);
    Node* next = node->NextAcquire(level);
    if (next == nullptr || compare_(next->key, key) >= 0) {
      if (level == 0) return node;
      --level;
    } else {
      node = next;
    }
  }
}

template <typename Key, class Comparator>
typename SkipList<Key, Comparator>::Node* SkipList<Key, Comparator>::FindLast() const {
  Node* node = head_;
  int level = max_height() - 1;
  for (;;) {
    Node* next = node->NextAcquire(level);
    if (next == nullptr) {
      if (level == 0) return node;
      --level;
    } else {
      node = next;
    }
  }
}

template <typename Key, class Comparator>
void SkipList<Key, Comparator>::Insert(const Key& key) {
  Node* prev[kMaxHeight];
  Node* existing = FindGreaterOrEqual(key, prev);
  CFS_ASSERT(existing == nullptr || compare_(key, existing->key) != 0);  // invariant 3
  const int height = RandomHeight();
  if (height > max_height()) {
    for (int level = max_height(); level < height; ++level) prev[level] = head_;
    // Invariant 4: readers may see the new height before the head's levels are linked.
    max_height_.store(height, std::memory_order_relaxed);
  }
  Node* node = NewNode(key, height);
  for (int level = 0; level < height; ++level) {
    // Invariant 2: the node's own pointer first (relaxed: it is not yet published), then the
    // release store in prev publishes it.
    node->SetNextRelaxed(level, prev[level]->NextRelaxed(level));
    prev[level]->SetNextRelease(level, node);
  }
}

template <typename Key, class Comparator>
bool SkipList<Key, Comparator>::Contains(const Key& key) const {
  Node* node = FindGreaterOrEqual(key, nullptr);
  return node != nullptr && compare_(key, node->key) == 0;
}

}  // namespace cascadefs::engine
