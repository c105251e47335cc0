"""A Scrapy CrawlSpider over one site, for bench/crawl.sh (W13).

    scrapy runspider scrapy_crawl.py -a start=URL -a out=FILE -s CONCURRENT_REQUESTS=64

Follows every <a>/<area> link on the start URL's host (allowed_domains; Scrapy's default
LinkExtractor, which skips links to common binary extensions), each URL
once (Scrapy's dupefilter), and writes the URLs it got a response for to
`out`, one per line."""
from urllib.parse import urlsplit

from scrapy.linkextractors import LinkExtractor
from scrapy.spiders import CrawlSpider, Rule


class SiteSpider(CrawlSpider):
    name = "site"
    custom_settings = {
        "ROBOTSTXT_OBEY": False,
        "LOG_LEVEL": "ERROR",
        "COOKIES_ENABLED": False,
        "RETRY_ENABLED": False,
        "TELNETCONSOLE_ENABLED": False,
        "DOWNLOAD_DELAY": 0,
        "AUTOTHROTTLE_ENABLED": False,
        "DEPTH_LIMIT": 0,
        "REQUEST_FINGERPRINTER_IMPLEMENTATION": "2.7",
    }

    def __init__(self, start=None, out=None, **kwargs):
        host = urlsplit(start).hostname
        self.start_urls = [start]
        self.allowed_domains = [host]
        self.rules = (Rule(LinkExtractor(), callback="parse_page", follow=True),)
        self.out = out
        self.seen = []
        super().__init__(**kwargs)

    def parse_start_url(self, response):
        return self.parse_page(response)

    def parse_page(self, response):
        self.seen.append(response.url)
        return []

    def closed(self, reason):
        with open(self.out, "w") as f:
            f.write("\n".join(self.seen) + "\n")
