"""The emulated kernel's modules import each other without a cycle (issue #15).

The graph is read from the source with `ast` (every import statement, also those inside a function,
since a deferred import is still a dependency); nothing is imported to build it.
"""
import ast
import os
import shutil
import sys
import tempfile
import unittest

PACKAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'emukernel')


def import_graph(package_dir):
    """{module: set of modules of the same package it imports}, for a flat package directory."""
    package = os.path.basename(os.path.normpath(package_dir))
    modules = {name[:-3] for name in os.listdir(package_dir) if name.endswith('.py')}
    graph = {}
    for module in sorted(modules):
        path = os.path.join(package_dir, module + '.py')
        with open(path, encoding='utf-8') as f:
            tree = ast.parse(f.read(), filename=path)
        edges = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                if node.level == 1:
                    base = node.module
                elif node.level == 0 and node.module and node.module.split('.')[0] == package:
                    base = node.module[len(package) + 1:] or None
                else:
                    continue
                if base is None:          # `from . import a, b`: each name is a module
                    edges.update(alias.name for alias in node.names if alias.name in modules)
                else:
                    edges.add(base.split('.')[0])
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    parts = alias.name.split('.')
                    if parts[0] == package and len(parts) > 1:
                        edges.add(parts[1])
        graph[module] = {m for m in edges if m in modules and m != '__init__'}
    return graph


def find_cycle(graph):
    """One import cycle as a list of modules (first == last), or None."""
    state = {}            # module -> 1 on the current path, 2 done
    path = []

    def visit(module):
        state[module] = 1
        path.append(module)
        for nxt in sorted(graph.get(module, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state:
            found = visit(module)
            if found:
                return found
    return None


class ImportCycleTest(unittest.TestCase):
    def test_the_emulated_kernel_has_no_import_cycle(self):
        graph = import_graph(PACKAGE)
        self.assertIn('scenario', graph['families'], 'the graph reader missed families -> scenario')
        cycle = find_cycle(graph)
        self.assertIsNone(cycle, 'import cycle in xtask/emu/emukernel: %s (move what both sides need '
                          'to a module that imports neither)' % ' -> '.join(cycle or []))

    def test_scenario_imports_no_family(self):
        self.assertEqual(graph_of('scenario') & {'families', 'wfp', 'pnp', 'cm', 'callbacks'}, set())

    def test_a_cyclic_package_is_detected(self):
        root = tempfile.mkdtemp()
        try:
            pkg = os.path.join(root, 'cyclic')
            os.mkdir(pkg)
            files = {
                '__init__.py': '',
                'a.py': 'from .b import thing\n',
                'b.py': 'def f():\n    from cyclic import c\n    return c\n',   # deferred, still an edge
                'c.py': 'from . import a, leaf\n',
                'leaf.py': 'import os\n',
            }
            for name, text in files.items():
                with open(os.path.join(pkg, name), 'w', encoding='utf-8') as f:
                    f.write(text)
            graph = import_graph(pkg)
            self.assertEqual(graph['c'], {'a', 'leaf'})
            self.assertEqual(find_cycle(graph), ['a', 'b', 'c', 'a'])
            os.remove(os.path.join(pkg, 'c.py'))
            with open(os.path.join(pkg, 'c.py'), 'w', encoding='utf-8') as f:
                f.write('from . import leaf\n')
            self.assertIsNone(find_cycle(import_graph(pkg)))
        finally:
            shutil.rmtree(root)


def graph_of(module):
    return import_graph(PACKAGE)[module]


if __name__ == '__main__':
    sys.exit(unittest.main())
