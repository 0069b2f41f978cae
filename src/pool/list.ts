/* Intrusive doubly-linked lists: a connection lives on exactly one list, and its list is its state. */

export interface ListNode {
  prev: ListNode | null;
  next: ListNode | null;
  list: StatList<ListNode> | null;
}

/** O(1) push/remove/shift with no allocation; `count` is what SHOW POOLS reports. */
export class StatList<T extends ListNode> {
  head: T | null = null;
  tail: T | null = null;
  count = 0;

  constructor(readonly name: string) {}

  push(node: T): void {
    node.list = this as unknown as StatList<ListNode>;
    node.prev = this.tail;
    node.next = null;
    if (this.tail) this.tail.next = node;
    else this.head = node;
    this.tail = node;
    this.count++;
  }

  unshift(node: T): void {
    node.list = this as unknown as StatList<ListNode>;
    node.next = this.head;
    node.prev = null;
    if (this.head) this.head.prev = node;
    else this.tail = node;
    this.head = node;
    this.count++;
  }

  remove(node: T): void {
    if (node.list !== (this as unknown as StatList<ListNode>)) return;
    if (node.prev) node.prev.next = node.next;
    else this.head = node.next as T | null;
    if (node.next) node.next.prev = node.prev;
    else this.tail = node.prev as T | null;
    node.prev = node.next = null;
    node.list = null;
    this.count--;
  }

  shift(): T | null {
    const n = this.head;
    if (n) this.remove(n);
    return n;
  }

  pop(): T | null {
    const n = this.tail;
    if (n) this.remove(n);
    return n;
  }

  /** Snapshot as an array (for iteration while members may move). */
  toArray(): T[] {
    const out: T[] = [];
    for (let n = this.head; n; n = n.next as T | null) out.push(n);
    return out;
  }
}
