// Parses each query with Grafana's own editor grammar and counts the error nodes in the tree.
// stdin: JSON [{"dialect": "logql" | "traceql", "query": "..."}]
// stdout: JSON [{"dialect", "query", "errors": <count>, "at": [<offset of each error node>]}]
import { parser as logql } from '@grafana/lezer-logql';
import { parser as traceql } from '@grafana/lezer-traceql';

const PARSERS = { logql, traceql };

function countErrors(dialect, query) {
  const parser = PARSERS[dialect];
  if (!parser) throw new Error(`unknown dialect '${dialect}' (known: ${Object.keys(PARSERS).join(', ')})`);
  const at = [];
  parser.parse(query).iterate({
    enter(node) {
      if (node.type.isError) at.push(node.from);
    },
  });
  return { dialect, query, errors: at.length, at };
}

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const items = JSON.parse(Buffer.concat(chunks).toString('utf8'));
process.stdout.write(JSON.stringify(items.map((item) => countErrors(item.dialect, item.query))) + '\n');
