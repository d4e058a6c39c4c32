"""groups domain: virtual support groups and group telehealth."""
