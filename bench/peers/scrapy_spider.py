"""A Scrapy spider over a URL list.

    scrapy runspider scrapy_spider.py -a urls=URLS_FILE -s CONCURRENT_REQUESTS=64 ..."""
import scrapy


class ListSpider(scrapy.Spider):
    name = "list"
    custom_settings = {
        "ROBOTSTXT_OBEY": False,
        "LOG_LEVEL": "ERROR",
        "COOKIES_ENABLED": False,
        "RETRY_ENABLED": False,
        "TELNETCONSOLE_ENABLED": False,
        "DOWNLOAD_DELAY": 0,
        "AUTOTHROTTLE_ENABLED": False,
        "REQUEST_FINGERPRINTER_IMPLEMENTATION": "2.7",
    }

    def __init__(self, urls=None, **kwargs):
        super().__init__(**kwargs)
        self.urls_path = urls

    async def start(self):
        # Scrapy 2.13+ reads requests from `start`; it pulls them lazily.
        with open(self.urls_path) as f:
            for line in f:
                url = line.strip()
                if url:
                    yield scrapy.Request(url, callback=self.parse, dont_filter=True)

    def parse(self, response):
        return None
