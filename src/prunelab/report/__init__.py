"""What a reader sees: figures (`figures`) and the Markdown of the report (`markdown`,
`answer`)."""
