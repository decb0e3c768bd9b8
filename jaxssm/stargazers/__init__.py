"""The stargazers application: from a repository's stargazers to an investor report."""
