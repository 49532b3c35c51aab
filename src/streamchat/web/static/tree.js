// A conversation's messages as a tree, as the page knows them: the stream holds the items of every
// branch, and the page shows one branch (the active one). The rules are the server's (tree.py): a
// message names its parent (`parentId`, null for a root); an item without the field was written
// before messages had parents and follows the item created before it; a parent the page does not
// hold makes the message a root. Items are given in creation order (the stream's order). Tool calls
// (`from: "tool"`) hang off their replies outside the tree, as on the server.
"use strict";
(function (global) {
  class MessageTree {
    constructor(items) {
      this.parent = new Map();     // id -> parent id (null for a root)
      this.children = new Map([[null, []]]);
      this.order = [];
      let previous = null;
      for (const item of items) {
        if (item.from === "tool") continue;
        let parent = "parentId" in item ? item.parentId ?? null : previous;
        if (parent !== null && !this.parent.has(parent)) parent = null;
        this.parent.set(item.id, parent);
        this.children.get(parent).push(item.id);
        this.children.set(item.id, []);
        this.order.push(item.id);
        previous = item.id;
      }
    }

    has(id) { return this.parent.has(id); }

    // The messages with the same parent, in creation order, the message itself included.
    siblings(id) { return this.has(id) ? this.children.get(this.parent.get(id)) : [id]; }

    // Root first, down to the message; empty for a message the tree does not hold.
    pathTo(id) {
      const path = [];
      for (let current = this.has(id) ? id : null; current !== null; current = this.parent.get(current)) path.push(current);
      return path.reverse();
    }

    // What a conversation shows before the server has named its active branch: the latest message's.
    latestPath() { return this.order.length ? this.pathTo(this.order[this.order.length - 1]) : []; }
  }

  global.MessageTree = MessageTree;
})(window);
